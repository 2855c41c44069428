"""What an upper envelope over more points of the *same* method is worth in this protocol's BD-rate.

The protocol reduces every curve to its upper envelope before the BD integral. A curve with more
points has more chances to land a lucky one above its neighbours, so its envelope sits higher for
no other reason: the oracle's curve is the envelope of 72 points per volume (8 QP_I x 3
foreground x 3 background offsets), every other curve's of 8. How big is that bonus here?

This bench measures it with one method only, constant-QP HEVC: the protocol's anchor (QPs 14, 18,
.. 42) and the same encoder on grids shifted by 1, 2 and 3 QPs (``bench/protocol_noise.py --shift
S``, which codes them). For n = 1 .. 4 grids it reports the BD-rate of the envelope of their
union (8, 16, 24, 32 points) against the anchor's own 8-point curve, per volume and as a mean.
The method is the same throughout, so every non-zero mean is what the envelope and the point
count give, not a method. It codes nothing and chooses nothing.

Usage::

    python bench/protocol_noise.py --shift 1 --out bench/results/protocol_noise_shift1.json   # codes 104 points
    python bench/protocol_noise.py --shift 3 --out bench/results/protocol_noise_shift3.json   # codes 104 points
    python bench/envelope_bonus.py

Prints the table and writes ``bench/results/envelope_bonus.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: Order in which shifted grids join the anchor: 2 first, so that 16 points are evenly spaced.
SHIFT_ORDER = (0, 2, 1, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluate-work", type=Path, default=Path("work_dirs/evaluate"))
    parser.add_argument("--noise-work", type=Path, default=Path("work_dirs/protocol_noise"))
    parser.add_argument("--out", type=Path, default=RESULTS / "envelope_bonus.json")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from dmic_core.defaults import MIN_BD_OVERLAP
    from dmic_core.metrics.bd import bd_rate, upper_envelope
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.metrics.stats import bootstrap_mean_ci
    from dmic_core.protocol.run import ProtocolPlan, log_path, row_key
    from dmic_core.protocol.volumes import evaluation_volumes
    from dmic_core.runs import PointLog

    volumes = evaluation_volumes(args.evaluate_work / "volumes")
    plan = ProtocolPlan(volumes)
    names = [v.name for v in volumes]
    base_qps = [float(q) for q in plan.qps]
    step = base_qps[1] - base_qps[0]
    rows = []
    for path in (log_path(plan, args.evaluate_work), log_path(ProtocolPlan(volumes, agents={}), args.noise_work)):
        if not path.is_file():
            raise SystemExit(f"no point log at {path}: run dmic evaluate and bench/protocol_noise.py first")
        rows += [r for r in PointLog(path, row_key) if r["curve"] == ANCHOR and r["volume"] in names]
    points = pd.DataFrame(rows).drop_duplicates(["volume", "setting"])
    points["shift"] = ((points.setting - base_qps[0]) % step).round().astype(int)
    points = points[points.setting.between(base_qps[0], base_qps[-1] + step - 1)]  # one span of QPs per grid
    shifts = [s for s in SHIFT_ORDER if s in set(points["shift"])]

    table = []
    for volume in names:
        here = points[points.volume == volume]
        base = here[here["shift"] == 0]
        if len(base) < len(base_qps):
            continue
        anchor = upper_envelope(base.bpp.values, base.miou.values)
        for n in range(1, len(shifts) + 1):
            union = here[here["shift"].isin(shifts[:n])]
            if union.groupby("shift").size().reindex(shifts[:n], fill_value=0).min() < len(base_qps):
                continue
            env = upper_envelope(union.bpp.values, union.miou.values)
            table.append({"volume": volume, "grids": n, "points": int(len(union)),
                          "bd_rate_pct": bd_rate(*anchor, *env, min_overlap=MIN_BD_OVERLAP).value})
    frame = pd.DataFrame(table)
    summary = []
    for n, group in frame.groupby("grids"):
        values = group.bd_rate_pct.dropna().values
        ci = bootstrap_mean_ci(values)
        summary.append({"grids": int(n), "points_per_volume": int(group.points.iloc[0]), "volumes": int(values.size),
                        "bd_rate_mean": ci.mean, "bd_rate_low": ci.low, "bd_rate_high": ci.high,
                        "volumes_below_zero": int((values < 0).sum())})
    print("grids | points per volume | volumes | mean BD-rate vs the anchor's 8 points (95% CI) | volumes below 0")
    for s in summary:
        print(f"{s['grids']} | {s['points_per_volume']} | {s['volumes']} | {s['bd_rate_mean']:+.1f}% "
              f"[{s['bd_rate_low']:+.1f}, {s['bd_rate_high']:+.1f}] | {s['volumes_below_zero']}")
    with pd.option_context("display.float_format", "{:+.1f}".format, "display.width", 200):
        print(frame.pivot(index="volume", columns="grids", values="bd_rate_pct").to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/envelope_bonus.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "shifts": shifts, "anchor_qps": base_qps, "summary": summary,
        "per_volume": json.loads(frame.to_json(orient="records")),
    }, indent=1, default=float) + "\n")
    return 0 if np.isfinite([s["bd_rate_mean"] for s in summary]).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
