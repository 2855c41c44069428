"""JSON out: plain values from numpy and paths, and files written atomically.

Library code (sweeps, job tasks, batch tables) and the CLI write results the same way, so this
lives below all of them rather than in :mod:`dmic_core.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy arrays/scalars, paths and non-finite floats made JSON-safe
    (NaN -> null, +-inf -> "inf"/"-inf"), recursively through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a temporary name, then rename (never a half-written result)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n")
    tmp.replace(path)
