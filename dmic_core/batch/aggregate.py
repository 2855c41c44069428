"""A batch's tables: the points (one row per finished task), BD per volume and per method.

Only tasks the store marks ``done`` are read: a task is marked done after its output folder was
renamed into place, so a half-written result can never reach a table. Every table is written to
a temporary name and renamed.

* ``points.csv`` -- one row per done task: case, method, setting, bits, bpp, mIoU, Dice, PSNR.
* ``tasks.csv`` -- one row per task of the batch with its status, attempts and failure reason.
* ``bd_per_volume.{csv,json}`` -- BD-rate / BD-mIoU / BD-PSNR of each method against HEVC on
  each volume (NaN with the reason where a curve is too short or not monotonic).
* ``bd_per_method.{csv,json}`` -- per method: how many volumes have a BD value, their mean and
  median, and the BD of the dataset-mean curve (bpp and quality averaged per setting over the
  volumes where that method and the anchor have every setting).

The BD tables are :func:`dmic_core.evaluation.bd.bd_per_volume` and ``bd_per_method``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from dmic_core.evaluation.bd import bd_per_method, bd_per_volume
from dmic_core.evaluation.points import POINT_COLUMNS as POINT_ROW
from dmic_core.jobs import JobStore
from dmic_core.jsonio import to_jsonable

#: ``points.csv`` of a batch: the volume, then the point row's columns.
POINT_COLUMNS = ("case_id", *POINT_ROW)


def points_frame(store: JobStore, job_id: str) -> pd.DataFrame:
    """The finished points of a batch, sorted by case, method, setting."""
    rows = []
    for t in store.tasks(job_id, status="done"):
        s = t["summary"] or {}
        row = {"case_id": t["params"].get("case_id") or Path(t["volume"]).name, "method": t["method"],
               "setting": t["setting"]}
        row.update({k: s.get(k) for k in POINT_COLUMNS[3:]})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    return frame.sort_values(["case_id", "method", "setting"]).reset_index(drop=True)


def tasks_frame(store: JobStore, job_id: str) -> pd.DataFrame:
    """Every task of a batch with its status (the failures and their reasons included)."""
    rows = [{"task_id": t["id"], "case_id": t["params"].get("case_id"), "method": t["method"], "setting": t["setting"],
             "status": t["status"], "attempts": t["attempts"], "error": t["error"] or "",
             "seconds": round(t["finished_at"] - t["started_at"], 3) if t["finished_at"] and t["started_at"] else None}
            for t in store.tasks(job_id)]
    return pd.DataFrame(rows, columns=["task_id", "case_id", "method", "setting", "status", "attempts", "error",
                                       "seconds"])


def write_reports(out: Path, store: JobStore, job_id: str, meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write every table of the batch under ``out`` (atomically); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    points = points_frame(store, job_id)
    per_volume = bd_per_volume(points)
    per_method = bd_per_method(points, per_volume)
    tasks = tasks_frame(store, job_id)
    paths = {"points": out / "points.csv", "tasks": out / "tasks.csv",
             "bd_per_volume": out / "bd_per_volume.csv", "bd_per_method": out / "bd_per_method.csv",
             "bd_per_volume_json": out / "bd_per_volume.json", "bd_per_method_json": out / "bd_per_method.json"}
    _write_csv(points, paths["points"])
    _write_csv(tasks, paths["tasks"])
    _write_csv(per_volume, paths["bd_per_volume"])
    _write_csv(per_method, paths["bd_per_method"])
    header = {"anchor": "hevc", "meta": meta or {}}
    _write_json(paths["bd_per_volume_json"], {**header, "rows": _records(per_volume)})
    _write_json(paths["bd_per_method_json"], {**header, "rows": _records(per_method)})
    return paths


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for JSON (NaN becomes null: strict JSON has no NaN)."""
    return to_jsonable(frame.to_dict(orient="records"))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
