"""How far apart two curves of the *same* method land in the evaluation protocol: its noise floor.

The protocol's per-volume BD-rates rest on 8 points per curve, and mIoU of the U-Net's
segmentation of a decoded slab moves by a few 1e-2 between neighbouring QPs. How much of a
per-volume difference between two methods is that noise? This bench codes the constant-QP anchor
a second time on a grid shifted by ``--shift`` QPs (same encoder, same volumes, same scoring) and
reports, per volume, the BD-rate of that curve against the protocol's own anchor curve. The
method is the same, so every non-zero figure is the protocol's resolution, not a difference in
method. It also reports, from the evaluation's point log, how far apart the five hand-crafted
maps land on each volume (they differ only in the shape of their foreground offsets).

It runs on the evaluation volumes because the noise of *those* figures is the question; it
chooses nothing (no model, seed or setting), so it cannot leak into a result.

Usage::

    python bench/protocol_noise.py --workers 2          # 104 real points; 15 min on one niced worker here

Prints the table and writes ``bench/results/protocol_noise.json`` (points under ``--work``, so a
rerun only adds what is missing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluate-work", type=Path, default=Path("work_dirs/evaluate"),
                        help="dmic evaluate's work folder (volumes and the anchor's points)")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/protocol_noise"))
    parser.add_argument("--shift", type=float, default=2.0, help="QPs added to the anchor's grid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "protocol_noise.json")
    args = parser.parse_args(argv)

    import pandas as pd

    from dmic_core.agents.handcrafted import HANDCRAFTED
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.protocol.run import ProtocolPlan, log_path, row_key, run_protocol
    from dmic_core.protocol.summary import per_volume_bd
    from dmic_core.protocol.volumes import evaluation_volumes
    from dmic_core.runs import PointLog

    volumes = evaluation_volumes(args.evaluate_work / "volumes")
    plan = ProtocolPlan(volumes)
    anchor_log = log_path(plan, args.evaluate_work)
    if not anchor_log.is_file():
        raise SystemExit(f"no evaluation point log at {anchor_log}: run `dmic evaluate` first")
    evaluation = pd.DataFrame(list(PointLog(anchor_log, row_key)))
    evaluation = evaluation[evaluation.volume.isin([v.name for v in volumes])]

    name = f"{ANCHOR}{args.shift:+g}"
    qps = [float(q) + args.shift for q in plan.qps]
    # the protocol's own runner and point log (under --work, so the evaluation's log is untouched)
    shifted_plan = ProtocolPlan(volumes, agents={}, qps=qps, methods=(ANCHOR,))
    done_before = len(PointLog(log_path(shifted_plan, args.work), row_key))
    start = time.perf_counter()
    log = run_protocol(shifted_plan, args.work, workers=args.workers)
    seconds = time.perf_counter() - start
    coded = len(log) - done_before

    shifted = pd.DataFrame(list(log)).assign(curve=name)
    keep = ["volume", "curve", "method", "setting", "bpp", "miou", "psnr_hu"]
    anchor = evaluation[evaluation.curve == ANCHOR][keep]
    maps = evaluation[evaluation.curve.isin(HANDCRAFTED)][keep]
    table = per_volume_bd(pd.concat([anchor, shifted[keep], maps], ignore_index=True))
    rate = table.pivot(index="volume", columns="method", values="bd_rate_pct")
    null = rate[name]
    map_cols = [m for m in HANDCRAFTED if m in rate.columns]
    spread = rate[map_cols].max(axis=1) - rate[map_cols].min(axis=1)
    per_volume = pd.DataFrame({"same_method_bd_rate_pct": null, "maps_best_pct": rate[map_cols].min(axis=1),
                               "maps_worst_pct": rate[map_cols].max(axis=1), "maps_spread_pp": spread})
    finite = null.dropna()
    # the same comparison with a monotone least-squares fit in place of the upper envelope: is the
    # noise an artefact of how a wobbly curve is reduced before the BD integral?
    iso = pd.Series({v: _isotonic_bd(anchor[anchor.volume == v], shifted[shifted.volume == v])
                     for v in sorted(anchor.volume.unique())}).dropna()
    summary = {
        "same_method": {"curve": name, "volumes": int(finite.size), "mean_pct": float(finite.mean()),
                        "sd_pct": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                        "max_abs_pct": float(finite.abs().max()),
                        "isotonic_fit_sd_pct": float(iso.std(ddof=1)) if iso.size > 1 else float("nan")},
        "maps": {"mean_spread_pp": float(spread.mean()), "median_spread_pp": float(spread.median()),
                 "max_spread_pp": float(spread.max()),
                 "mean_sd_pp": float(rate[map_cols].std(axis=1, ddof=1).mean())},
    }
    with pd.option_context("display.float_format", "{:+.1f}".format, "display.width", 160):
        print(per_volume.to_string())
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/protocol_noise.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "anchor_log": str(anchor_log), "shift": args.shift, "qps": qps,
        "points_coded_by_this_run": coded, "seconds": round(seconds, 1), "summary": summary,
        "per_volume": json.loads(per_volume.reset_index().to_json(orient="records")),
    }, indent=1, default=float) + "\n")
    return 0


def _isotonic_bd(anchor, test) -> float:
    """BD-rate (%) of ``test`` against ``anchor`` with each curve reduced by isotonic regression
    (mIoU non-decreasing in rate; tied levels keep their cheapest point) instead of the envelope."""
    import numpy as np
    from scipy.optimize import isotonic_regression

    from dmic_core.defaults import MIN_BD_OVERLAP
    from dmic_core.metrics.bd import bd_rate

    def fit(points):
        order = np.argsort(points.bpp.values)
        rate, quality = points.bpp.values[order], points.miou.values[order]
        level = isotonic_regression(quality, increasing=True).x
        keep = np.r_[True, np.diff(level) > 1e-12]
        return rate[keep], level[keep]

    if anchor.empty or test.empty:
        return float("nan")
    return bd_rate(*fit(anchor), *fit(test), min_overlap=MIN_BD_OVERLAP).value


if __name__ == "__main__":
    raise SystemExit(main())
