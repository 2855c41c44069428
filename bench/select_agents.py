"""Choose the default agents on *validation* volumes with real encodes (never on evaluation ones).

Candidates are agent checkpoints (e.g. the same training run with two actor updates). Each is
run, with the constant-QP anchor (and with ``--maps`` the hand-crafted maps), on validation phantoms of the
training run's split (33-slice heart slabs, scored against their labels), through the same
runner and point log format as ``dmic evaluate``; the winner is chosen by
:func:`dmic_core.protocol.summary.choose_curve`: a BD-rate on mIoU against the anchor on the most
volumes, then the lowest mean over the volumes where the tied candidates all have one. Refuses seeds reserved for evaluation.

Usage::

    python bench/select_agents.py --data work_dirs/agents_train/phantoms --seeds 6003,6021 \\
        --candidate greedy=work_dirs/agents_train/greedy.pt --candidate sampled=work_dirs/agents_train/sampled.pt

With ``--slabs`` each volume's curves pool three slabs (its heart slab and the 33 frames below
and above it; :mod:`dmic_core.protocol.slabs`): a choice at about a third of one slab's noise, for
three times the points::

    python bench/select_agents.py --data work_dirs/agents_train/phantoms --seeds 6003,6021,6019,6004,6010,6011 \
        --slabs --candidate current_default=assets/agents_dmic.pt --candidate fg_le0=work_dirs/agents_fgcap/agents_dmic_fg_le0.pt

Prints the table and writes ``bench/results/select_agents.json`` (and the point log under
``--work``, so a rerun only adds what is missing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def same_files(candidates: dict[str, str]) -> list[str]:
    """Names of candidates whose checkpoints have the same bytes (empty when all differ)."""
    from dmic_core.assets import sha256

    by_hash: dict[str, list[str]] = {}
    for name, path in candidates.items():
        by_hash.setdefault(sha256(Path(path)), []).append(name)
    return next((names for names in by_hash.values() if len(names) > 1), [])


def paired_to_first(per_volume, curves: list[str]) -> dict[str, dict]:
    """Each later candidate's per-volume BD-rate minus the first's (the incumbent's), on the volumes
    where both have one: mean, 95% bootstrap interval and the volumes where it is lower."""
    from dmic_core.protocol.summary import paired_difference

    rate = per_volume.pivot(index="volume", columns="method", values="bd_rate_pct")
    out = {}
    for curve in curves[1:]:
        if curve not in rate or curves[0] not in rate:
            continue
        paired = paired_difference(rate[curve], rate[curves[0]])
        if paired["volumes"]:
            out[f"{curve} minus {curves[0]}"] = paired
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--seeds", required=True, help="comma list of validation phantom seeds")
    parser.add_argument("--candidate", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/select_agents"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--maps", action="store_true", help="also run the five hand-crafted maps (5 x 8 points per volume)")
    parser.add_argument("--slabs", action="store_true",
                        help="pool three slabs per volume (the heart slab and the 33 frames below and above it)")
    parser.add_argument("--out", type=Path, default=RESULTS / "select_agents.json")
    args = parser.parse_args(argv)

    from dmic_core.agents.handcrafted import HANDCRAFTED
    from dmic_core.datasets.seeds import selection_seeds
    from dmic_core.defaults import repo_relative
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.protocol.run import AGENTS, ProtocolPlan, agents_curve, current_rows, run_protocol
    from dmic_core.protocol.summary import choose_curve, per_volume_bd, summarise
    from dmic_core.protocol.volumes import phantom_volume

    try:
        seeds = selection_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    candidates = {}
    for item in args.candidate:
        name, _, path = item.partition("=")
        if not Path(path).is_file():
            raise SystemExit(f"candidate checkpoint not found: {path}")
        candidates[agents_curve(name)] = path
    same = same_files(candidates)
    if same:  # e.g. the incumbent named by its shipped path after the challenger was copied there
        raise SystemExit(f"candidates {' and '.join(same)} are the same file: nothing to choose between them")
    volumes = [phantom_volume(s, args.data) for s in seeds]
    plan = ProtocolPlan(volumes, candidates, oracle_volumes=0, methods=(ANCHOR, *(HANDCRAFTED if args.maps else ()), AGENTS))
    start = time.perf_counter()
    import pandas as pd

    points = pd.DataFrame(current_rows(run_protocol(plan, args.work, workers=args.workers), plan))
    slabs = {}
    if args.slabs:
        from dmic_core.protocol.slabs import pooled, slab_plans

        per_slab = {"0": points}
        for offset, moved in slab_plans(plan, args.work).items():
            per_slab[offset] = pd.DataFrame(current_rows(run_protocol(moved, args.work, workers=args.workers), moved))
            slabs[offset] = [list(v.slices) for v in moved.volumes]
        points = pooled(per_slab)
    per_volume = per_volume_bd(points)
    summary = summarise(per_volume)
    print(summary[["curve", "volumes", "bd_rate_mean", "bd_miou_mean", "beats_best_map"]].to_string(index=False))
    winner, choice = choose_curve(per_volume, candidates)
    print(choice.to_string(index=False))
    paired = paired_to_first(per_volume, list(candidates))
    for name, d in paired.items():
        print(f"{name}: {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] points, lower on {d['lower_on']}/{d['volumes']}")
    print(f"winner on validation (most volumes with a BD, then the paired mean): {winner}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/select_agents.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "validation_volumes": [v.as_dict() for v in volumes], "pooled_slabs": slabs or None,
        "candidates": {k: repo_relative(v) for k, v in candidates.items()},
        "winner": winner, "choice": json.loads(choice.to_json(orient="records")), "paired": paired,
        "seconds": round(time.perf_counter() - start, 1),
        "per_volume": json.loads(per_volume.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
    }, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
