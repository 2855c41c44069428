"""Rate-vs-accuracy sweeps: every method at every setting on one volume, then BD against HEVC.

:func:`run_sweep` runs the points (:func:`dmic_core.runs.run_points`: each decided by its method,
really encoded and decoded, segmented and scored with :func:`dmic_core.evaluation.task_accuracy`)
and returns the ``points.csv`` table; :func:`write_sweep` writes it with the BD table against HEVC
(:func:`dmic_core.evaluation.bd.bd_table`) and the plotly figure. ``dmic sweep`` is these two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from dmic_core.evaluation.bd import bd_table
from dmic_core.evaluation.points import PointResult
from dmic_core.methods.base import PointSpec
from dmic_core.pipeline import TASK_CODING, CodingSetup
from dmic_core.runs import CaseSpec, PointJob, run_points


def run_sweep(image: str | Path, label: str | Path | None, specs: Sequence[PointSpec], *,
              setup: CodingSetup = TASK_CODING, segmenter: str = "builtin", slices: tuple[int, int] | None = None,
              workers: int | None = None, agents: str | None = None,
              on_point: Callable[[PointResult, int, int], None] | None = None,
              roi: str | Path | None = None) -> pd.DataFrame:
    """Run ``specs`` on one volume in worker processes; the points table sorted by method and bpp.

    ``roi``: a mask that replaces the model's segmentation of the original as the protected region.
    """
    case = CaseSpec(str(image), None if label is None else str(label), segmenter,
                    None if slices is None else tuple(slices), None if roi is None else str(roi))
    jobs = [PointJob(case, spec, {"agents": agents} if spec.method == "dmic" and agents else {}) for spec in specs]
    done = run_points(jobs, setup=setup, workers=workers,
                      on_point=None if on_point is None else lambda _job, result, n, total: on_point(result, n, total))
    frame = pd.DataFrame([result.row() for _job, result in done])
    return frame.sort_values(["method", "bpp"]).reset_index(drop=True)


def write_sweep(out_dir: Path, points: pd.DataFrame, meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """``points.csv``, ``bd.json`` and ``curves.html`` (plotly) in ``out_dir``."""
    from dmic_core.plotting import rate_curves_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"points": out_dir / "points.csv", "bd": out_dir / "bd.json", "figure": out_dir / "curves.html"}
    tmp = paths["points"].with_suffix(".csv.tmp")
    points.to_csv(tmp, index=False)
    tmp.replace(paths["points"])
    table = bd_table(points)
    bd = {"anchor": "hevc", "meta": meta or {},
          "methods": json.loads(table.to_json(orient="records")) if not table.empty else []}
    tmp = paths["bd"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(bd, indent=2) + "\n")
    tmp.replace(paths["bd"])
    figure = rate_curves_figure(points)
    tmp = paths["figure"].with_suffix(".html.tmp")
    figure.write_html(str(tmp), include_plotlyjs=True)
    tmp.replace(paths["figure"])
    return paths
