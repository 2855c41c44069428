"""Argument helpers shared by the subcommands (one parser per concern, JSON on stdout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dmic_core.errors import DmicInputError


def add_coding_arguments(parser) -> None:
    """``--codec --preset --bit-depth --window``: how frames are coded."""
    parser.add_argument("--codec", default="x265", choices=["x265", "hm"], help="HEVC engine (default x265)")
    parser.add_argument("--preset", default=None, help="x265 preset (default: the documented one)")
    parser.add_argument("--bit-depth", type=int, default=12, choices=[8, 10, 12],
                        help="coded sample depth (default 12: HU -1024..3071 kept whole)")
    parser.add_argument("--window", type=parse_window, default=None, metavar="LO,HI",
                        help="HU window mapped onto the sample range (default: full range at 12 bits, "
                             "-200,824 at 8/10 bits)")


def parse_window(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise ValueError(f"window must be LO,HI in HU, got {text!r}") from exc
    if hi <= lo:
        raise ValueError(f"window upper bound must exceed lower bound, got {text!r}")
    return lo, hi


def parse_slices(text: str | None, n_frames: int, source: str | Path) -> tuple[int, int]:
    """``A:B`` (Python slice, either end optional) -> checked (start, stop)."""
    if text is None:
        return 0, n_frames
    try:
        a, b = text.split(":")
        start = int(a) if a else 0
        stop = int(b) if b else n_frames
    except ValueError:
        raise DmicInputError(f"--slices must look like A:B, got {text!r}", source) from None
    if start < 0:
        start += n_frames
    if stop < 0:
        stop += n_frames
    if not 0 <= start < stop <= n_frames:
        raise DmicInputError(f"--slices {text} is outside the volume's 0:{n_frames} frames", source)
    return start, stop


def to_jsonable(value: Any) -> Any:
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


def print_json(payload: Any) -> None:
    json.dump(to_jsonable(payload), sys.stdout, indent=2)
    sys.stdout.write("\n")


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a temporary name, then rename (never a half-written result)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n")
    tmp.replace(path)
