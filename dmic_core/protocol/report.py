"""Write the protocol's report: ``evaluation.md``, ``evaluation.html`` (plotly, offline) and ``summary.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from dmic_core.defaults import MIN_BD_OVERLAP, repo_relative
from dmic_core.errors import DmicInputError
from dmic_core.methods.registry import ANCHOR
from dmic_core.protocol.methods import ON_LABEL, ORACLE, ORACLE_EXTENDED, TWO_LEVEL_BG, TWO_LEVEL_ON_LABEL
from dmic_core.protocol.run import QP_I_METHODS, QP_METHODS, ProtocolPlan
from dmic_core.protocol.slabs import slab_name
from dmic_core.protocol.volumes import SLAB, EvaluationVolume
from dmic_core.protocol.summary import figure, markdown, per_volume_bd, summarise
from dmic_core.segmentation.config import NAMED_WEIGHTS


def _point_hours(points: pd.DataFrame) -> float:
    """Sum of the points' own wall times (``seconds`` of each row), in hours."""
    return float(points["seconds"].sum()) / 3600.0 if "seconds" in points else 0.0


def _slices_of(volume: EvaluationVolume, slabs: dict[str, dict[str, list[int]]] | None) -> list[tuple[int, int]]:
    """The protocol slab of ``volume``, then each moved slab of it that ``slabs`` (offset -> moved name
    -> slices) holds."""
    moved = [(offset, names.get(slab_name(volume.name, int(offset)))) for offset, names in (slabs or {}).items()]
    return [tuple(volume.slices), *(tuple(s) for _, s in moved if s is not None)]


def curve_order(plan: ProtocolPlan) -> list[str]:
    return [*QP_METHODS[1:], *QP_I_METHODS, *plan.agents, *(name + ON_LABEL for name in plan.agents),
            TWO_LEVEL_ON_LABEL, ORACLE, ORACLE_EXTENDED]


def write_report(rows: list[dict[str, Any]], plan: ProtocolPlan, out: str | Path, *, wall_seconds: float | None,
                 command: str, slabs: dict[str, dict[str, list[int]]] | None = None) -> dict[str, Path]:
    """The protocol's markdown, plotly HTML, JSON summary and points CSV under ``out``.

    ``wall_seconds``: the time of the run that coded the last points; ``None`` for a report
    rebuilt from the log alone (``--report-only``), which says so instead of a time.
    ``slabs``: the moved slabs (offset -> volume -> slices) whose points ``rows`` pools, if any.

    Raises:
        DmicInputError: ``rows`` holds no point of ``plan``'s anchor (nothing to measure against).
    """
    if not any(r.get("curve") == ANCHOR for r in rows):
        raise DmicInputError(f"no {ANCHOR} point of this plan's volumes to report on "
                             f"({len(rows)} points in all): run the protocol before a report")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    points = pd.DataFrame(rows)
    per_volume = per_volume_bd(points)
    summary = summarise(per_volume)
    order = curve_order(plan)
    table = markdown(per_volume, summary, order)
    head = [
        "# Agents' evaluation protocol (real encodes)", "",
        f"Command: `{command}`  ", f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        + (f"wall time of the run that finished it: {wall_seconds / 60:.1f} min; " if wall_seconds is not None
           else "tables rebuilt from the point log, no point coded by this command; ")
        + f"{len(points)} points, "
        f"{_point_hours(points):.2f} h of point time summed over them (decide, encode, decode, segment, "
        "score; the runs that wrote the log may have overlapped them in parallel workers).", "",
        "Volumes: " + ", ".join(f"{v.name} (slices " + ", ".join(f"{a}:{b}" for a, b in _slices_of(v, slabs))
                                + f", vs {v.reference})" for v in plan.volumes) + ".", "",
        *([f"{1 + len(slabs)} slabs per labelled volume, pooled (`--slabs`): at each setting the bits of the slabs summed "
           f"and their mIoU averaged, so a volume's BD-rate rests on {(1 + len(slabs)) * SLAB} frames; a curve missing on a slab "
           "is left out of that volume. The real CT keeps its one slab (it has no label outside it). The "
           "points below count pooled points.", ""] if slabs else []),
        f"BD against constant-QP HEVC (`hevc`) on mIoU, upper envelopes, over the shared mIoU range; "
        f"n/a when the curves share less than {MIN_BD_OVERLAP:.0%} of their joint range. Intervals: "
        "95% percentile bootstrap over volumes. 'beats best map': volumes where the curve's BD-rate is "
        "lower than that of the best of the five hand-crafted maps on the same volume (the luckiest of five "
        "curves of one volume: `bench/protocol_noise.py` measures the per-volume noise). 'minus <map>': "
        "the paired per-volume difference to the one map with the lowest mean, its bootstrap interval, and "
        "on how many volumes the curve is lower. Oracle: "
        "two-level map on the ground-truth mask, every (QP_I, fg, bg) of the paper space, upper "
        "envelope; its share is the mean of BD-rate(curve) / BD-rate(oracle) where both are defined. "
        "Extended oracle: the same with the extended space's background offsets (+12, +16, +20) added "
        "to the paper oracle's points. '<agents> on label': the default agents given the label as their "
        "mask instead of the segmenter's (what a perfect vessel model would give them; a bound like the "
        "oracles, since it needs the label). "
        f"'{TWO_LEVEL_ON_LABEL}': the oracle's points of the one pair `two_level` uses (fg 0, bg "
        f"{TWO_LEVEL_BG:+d}), as many points per volume as every method's curve, where the oracle's curve is "
        "the envelope of all its pairs' points, and an envelope over more points of one method sits higher "
        "for no other reason (`bench/envelope_bonus.py`); the like-for-like bound, its share computed as "
        "the oracle's.", "",
        "Agents: " + ", ".join(f"`{k}` = `{repo_relative(v)}`" for k, v in plan.agents.items()) + ".", "",
        f"Diagnosis model (region and scores): `{plan.segmenter}` (`assets/{NAMED_WEIGHTS[plan.segmenter]}`).", "", "",
    ]
    paths = {"markdown": out / "evaluation.md", "html": out / "evaluation.html", "json": out / "summary.json",
             "points": out / "points.csv"}
    paths["markdown"].write_text("\n".join(head) + table + "\n")
    points.to_csv(paths["points"], index=False)
    figure(points, per_volume, order).write_html(str(paths["html"]), include_plotlyjs=True)
    paths["json"].write_text(json.dumps({
        "command": command, "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1), "points": len(points),
        "point_hours": round(_point_hours(points), 3),
        "volumes": [v.as_dict() for v in plan.volumes], "pooled_slabs": slabs, "agents": {k: repo_relative(v) for k, v in plan.agents.items()},
        "segmenter": plan.segmenter, "qps": list(plan.qps), "qp_is": list(plan.qp_is), "lambdas": list(plan.lambdas),
        "min_overlap": MIN_BD_OVERLAP,
        "per_volume": json.loads(per_volume.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
    }, indent=1) + "\n")
    return paths


__all__ = ["curve_order", "write_report"]
