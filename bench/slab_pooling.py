"""Would more slabs per volume make the evaluation protocol's per-volume figures precise enough?

The protocol scores one 33-frame slab per volume, and a volume's BD-rate of the constant-QP
anchor against itself on a grid shifted by 2 QPs spreads with an SD of about 15 points
(``bench/protocol_noise.py``): the U-Net's mIoU of a decoded slab wobbles between neighbouring
QPs. This bench measures how far that null shrinks when a volume's curve pools three slabs (the
protocol's slab and the 33 frames above and below it): bits summed, mIoU averaged over the
slabs (equal sizes), the same anchor on the same two grids.

It codes only the anchor, on the evaluation phantoms (the real crop has no label outside its
heart slab), and chooses nothing, so it cannot leak into a result. The protocol's slab reuses the
points already in ``dmic evaluate``'s log (grid 0) and in ``bench/protocol_noise.py``'s (grid
``--shift``).

Usage::

    python bench/slab_pooling.py --workers 2   # 384 new real points, 22 min on 2 workers here

With ``--methods`` it also codes those protocol methods on the extra slabs (the protocol's slab
reuses the evaluation's points) and reports their BD-rates against the anchor on the protocol's slab
alone and on the three slabs pooled, with paired differences: the same comparison at a third of
the noise. It reports; it chooses nothing::

    python bench/slab_pooling.py --workers 2 --methods two_level,exp,dmic --out bench/results/slab_pooling_methods.json

Prints the per-volume table and writes ``bench/results/slab_pooling.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


#: Columns of a point that the pooled curves and the BD tables use.
KEEP = ["volume", "curve", "method", "setting", "bpp", "miou", "psnr_hu"]


def coded_rows(plan, work: Path, workers: int, coded: list[int], curves) -> "pd.DataFrame":
    """Run ``plan`` (only its missing points are coded, their count appended to ``coded``) and return
    its own points (a log may hold other grids' too) of ``curves`` on labelled volumes, named by
    their plain volume."""
    import pandas as pd

    from dmic_core.protocol.run import job_key, log_path, row_key, run_protocol
    from dmic_core.protocol.slabs import plain_volume
    from dmic_core.runs import PointLog

    before = len(PointLog(log_path(plan, work), row_key))
    log = run_protocol(plan, work, workers=workers)
    coded.append(len(log) - before)
    by_image = {v.image: v.name for v in plan.volumes if v.label is not None}
    planned = {job_key(by_image[j.case.image], j) for j in plan.jobs() if j.case.image in by_image}
    rows = pd.DataFrame([r for r in log if r["curve"] in curves and row_key(r) in planned])
    return rows[KEEP].assign(volume=plain_volume(rows.volume))


def pooled_methods(args, protocol_volumes, volumes, variants, methods, slabs, coded) -> dict:
    """Code ``methods`` on the extra slabs and report their BD-rates against the anchor, on the
    protocol's slab alone and on the slabs pooled (the same 12 phantoms, the same settings)."""
    import pandas as pd

    from dmic_core.agents.handcrafted import HANDCRAFTED
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.metrics.stats import bootstrap_mean_ci
    from dmic_core.protocol.methods import ON_LABEL, TWO_LEVEL_ON_LABEL
    from dmic_core.protocol.run import AGENTS, AGENTS_ON_LABEL, ProtocolPlan, agents_curve
    from dmic_core.protocol.slabs import pooled, slab_variants
    from dmic_core.protocol.summary import paired_difference, per_volume_bd

    uses_agents = AGENTS in methods or AGENTS_ON_LABEL in methods
    agents = {agents_curve(Path(args.agents).stem): args.agents} if uses_agents else {}
    curves = [m for m in methods if m not in (AGENTS, AGENTS_ON_LABEL)]
    curves += list(agents) if AGENTS in methods else []
    curves += [name + ON_LABEL for name in agents] if AGENTS_ON_LABEL in methods else []

    def rows_of(plan, work):
        return coded_rows(plan, work, args.workers, coded, curves)

    # the protocol's slab: every point is already in dmic evaluate's log
    per_slab = {"0": rows_of(ProtocolPlan(protocol_volumes, agents, methods=tuple(methods)), args.evaluate_work)}
    for offset, moved in variants.items():
        per_slab[f"{offset:+d}"] = rows_of(ProtocolPlan(moved, agents, methods=tuple(methods)), args.work)
    if args.on_label:  # the like-for-like bound: the two-level rule on the label's CTUs, every slab
        for offset, moved in slab_variants(volumes, [0, *variants], args.work, label_region=True).items():
            rows = rows_of(ProtocolPlan(moved, {}, methods=("two_level",)), args.work)
            bound = rows[rows.curve == "two_level"].assign(curve=TWO_LEVEL_ON_LABEL)
            key = f"{offset:+d}" if offset else "0"
            per_slab[key] = pd.concat([per_slab[key], bound], ignore_index=True)
        curves.append(TWO_LEVEL_ON_LABEL)
    anchor = {s: g["grid0"] for s, g in slabs.items()}
    single = pd.concat([anchor["0"], per_slab["0"]], ignore_index=True)
    three = pd.concat([pooled(anchor), pooled(per_slab)], ignore_index=True)
    out = {}
    for label, points in (("protocol slab", single), ("3 slabs pooled", three)):
        table = per_volume_bd(points)
        rate = table.pivot(index="volume", columns="method", values="bd_rate_pct")
        summary = {}
        for curve in curves:
            ci = bootstrap_mean_ci(rate[curve].values)
            summary[curve] = {"mean": ci.mean, "low": ci.low, "high": ci.high, "volumes": int(rate[curve].notna().sum())}
            if TWO_LEVEL_ON_LABEL in rate.columns and curve != TWO_LEVEL_ON_LABEL:  # share of the bound's gain
                with_bound = rate[[curve, TWO_LEVEL_ON_LABEL]].dropna()
                summary[curve]["bound_share"] = float((with_bound[curve] / with_bound[TWO_LEVEL_ON_LABEL]).mean())
            maps = [m for m in HANDCRAFTED if m in rate.columns and m != curve]
            if len(maps) == len(HANDCRAFTED) or (curve in HANDCRAFTED and len(maps) == len(HANDCRAFTED) - 1):
                best = rate[maps].min(axis=1)
                ok = rate[curve].notna() & best.notna()
                summary[curve]["beats_best_other_map"] = int((rate[curve][ok] < best[ok]).sum())
        for a in curves:  # paired differences, each pair once
            for b in curves:
                if a < b:
                    summary[f"{a} minus {b}"] = paired_difference(rate[a], rate[b])
        out[label] = {"summary": summary, "per_volume": json.loads(rate.reset_index().to_json(orient="records"))}
        with pd.option_context("display.float_format", "{:+.1f}".format, "display.width", 200):
            print(f"--- {label}: BD-rate (%) against {ANCHOR} ---")
            print(rate[curves].T.to_string())
            print(pd.DataFrame(summary).T.to_string())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluate-work", type=Path, default=Path("work_dirs/evaluate"),
                        help="dmic evaluate's work folder (volumes and the anchor's grid-0 points)")
    parser.add_argument("--noise-work", type=Path, default=Path("work_dirs/protocol_noise"),
                        help="bench/protocol_noise.py's work folder (the anchor's shifted grid)")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/slab_pooling"))
    parser.add_argument("--shift", type=float, default=2.0, help="QPs added to the anchor's grid")
    parser.add_argument("--offsets", default=None, help="slab offsets in frames beside the protocol's slab "
                        "(default: dmic_core.protocol.slabs.SLAB_OFFSETS, the 33 frames below and above)")
    parser.add_argument("--methods", default="",
                        help="protocol methods to pool as well (e.g. two_level,exp,dmic): coded on the extra slabs "
                             "at the protocol's settings, their BD against the pooled anchor reported for the "
                             "protocol's slab alone and for the slabs pooled")
    parser.add_argument("--agents", default="assets/agents_dmic.pt", help="checkpoint of the dmic curve")
    parser.add_argument("--on-label", action="store_true",
                        help="with --methods: also code the two-level rule with the label as its region on every slab "
                             "(the like-for-like bound 'two_level on label', needs the label)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "slab_pooling.json")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from dmic_core.methods.registry import ANCHOR
    from dmic_core.protocol.run import ProtocolPlan
    from dmic_core.protocol.slabs import SLAB_OFFSETS, pooled, slab_variants
    from dmic_core.protocol.summary import per_volume_bd
    from dmic_core.protocol.volumes import evaluation_volumes

    protocol_volumes = evaluation_volumes(args.evaluate_work / "volumes")  # as the logs' keys were made
    volumes = [v for v in protocol_volumes if v.label is not None]
    offsets = list(SLAB_OFFSETS) if args.offsets is None else [int(o) for o in args.offsets.split(",") if o]
    base_qps = list(ProtocolPlan(volumes).qps)
    grids = {"grid0": base_qps, "shifted": [q + args.shift for q in base_qps]}
    variants = slab_variants(volumes, offsets, args.work)

    def anchor_rows(plan, work, coded: list[int]):
        return coded_rows(plan, work, args.workers, coded, {ANCHOR})

    start = time.perf_counter()
    coded: list[int] = []
    slabs: dict[str, dict[str, pd.DataFrame]] = {}  # slab -> grid -> anchor points
    # the protocol's own slab: points already coded by dmic evaluate and bench/protocol_noise.py
    slabs["0"] = {"grid0": anchor_rows(ProtocolPlan(protocol_volumes, agents={}, methods=(ANCHOR,)),
                                       args.evaluate_work, coded),
                  "shifted": anchor_rows(ProtocolPlan(protocol_volumes, agents={}, qps=grids["shifted"],
                                                      methods=(ANCHOR,)), args.noise_work, coded)}
    for offset, moved in variants.items():
        slabs[f"{offset:+d}"] = {grid: anchor_rows(ProtocolPlan(moved, agents={}, qps=qps, methods=(ANCHOR,)),
                                                   args.work, coded) for grid, qps in grids.items()}
    seconds = time.perf_counter() - start

    def null_bd(points_by_slab: dict[str, pd.DataFrame]) -> pd.Series:
        """Per volume: the shifted grid's BD-rate against grid 0 (the same method: pure noise)."""
        frames = []
        for grid, curve in (("grid0", ANCHOR), ("shifted", "shifted")):
            frames.append(pooled({s: g[grid] for s, g in points_by_slab.items()}).assign(curve=curve))
        table = per_volume_bd(pd.concat(frames, ignore_index=True))
        return table[table.method == "shifted"].set_index("volume").bd_rate_pct

    methods_report = None
    methods = [m for m in args.methods.split(",") if m]
    if methods:
        methods_report = pooled_methods(args, protocol_volumes, volumes, variants, methods, slabs, coded)
        seconds = time.perf_counter() - start

    columns = {f"slab {s}": null_bd({s: slabs[s]}) for s in slabs}
    columns["3 slabs pooled"] = null_bd(slabs)
    table = pd.DataFrame(columns)
    summary = {name: {"volumes": int(col.notna().sum()), "mean_pct": float(col.mean()),
                      "sd_pct": float(col.std(ddof=1)), "max_abs_pct": float(col.abs().max())}
               for name, col in table.items()}
    single = table[[c for c in table.columns if c.startswith("slab ")]]
    summary["single slabs, pooled SD"] = {"sd_pct": float(np.nanstd(single.values, ddof=1))}
    with pd.option_context("display.float_format", "{:+.1f}".format, "display.width", 160):
        print(table.to_string())
        print(pd.DataFrame(summary).T.to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/slab_pooling.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "shift": args.shift, "offsets": offsets, "qps": grids,
        "slabs": {v.name: [v.slices] + [list(m.slices) for moved in variants.values()
                                        for m in moved if m.name.startswith(v.name + "+")] for v in volumes},
        "points_coded_by_this_run": int(sum(coded)), "seconds": round(seconds, 1), "summary": summary,
        "per_volume": json.loads(table.reset_index(names="volume").to_json(orient="records")),
        "methods": methods_report,
    }, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
