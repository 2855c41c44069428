"""The files of a tuning run beside its checkpoint ``X.pt``: status, history, cancel request.

What the app polls and how any process asks a running tuning to stop; the run writes them
(:func:`dmic_core.finetune.tune.finetune`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def run_paths(out: str | Path) -> dict[str, Path]:
    """Files of a run whose checkpoint is ``out``."""
    out = Path(out)
    return {"checkpoint": out, "state": out.with_suffix(out.suffix + ".state"),
            "log": out.with_suffix(".log.jsonl"), "status": out.with_suffix(".status.json"),
            "cancel": out.with_suffix(".cancel"), "stdout": out.with_suffix(".stdout.log")}


def read_status(out: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(run_paths(out)["status"].read_text())
    except (OSError, ValueError):
        return None


def read_history(out: str | Path) -> list[dict[str, Any]]:
    """Rows of the training log (``X.log.jsonl``): reward, losses, entropies, ETA ..."""
    path = run_paths(out)["log"]
    rows = []
    try:
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line being written
    except OSError:
        pass
    return rows


def request_cancel(out: str | Path) -> None:
    """Ask a running tuning (in any process) to stop at its next iteration with a checkpoint."""
    path = run_paths(out)["cancel"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()))


def write_status(out: Path, payload: dict[str, Any]) -> None:
    path = run_paths(out)["status"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, default=float))
    tmp.replace(path)
