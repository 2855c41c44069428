"""``dmic evaluate``: the agents' evaluation protocol on the reserved evaluation volumes.

With ``--slabs`` every labelled volume's curves pool three slabs (:mod:`dmic_core.protocol.slabs`).

Resumable (points in ``WORK/<fingerprint>/points.jsonl``, one log per segmenter, coding setup and
x265 build): run it again to finish an interrupted run, or with
``--report-only`` to rebuild the tables from what is done. Every run copies the logs it used next to
the report (:mod:`dmic_core.protocol.archive`); ``--restore-from`` puts a committed report's copies
back into the working logs, so a fresh clone can resume or rebuild it.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from dmic_core.cli.common import print_json
from dmic_core.datasets.seeds import EVALUATION_SEEDS, parse_seeds
from dmic_core.segmentation.config import NAMED_WEIGHTS


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="the agents' evaluation protocol (every method, reserved volumes)")
    p.add_argument("--work", type=Path, default=Path("work_dirs/evaluate"), help="volumes and the point log")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default docs/results/evaluation, with --slabs docs/results/evaluation_slabs)")
    p.add_argument("--seeds", type=parse_seeds, default=list(EVALUATION_SEEDS),
                   help=f"evaluation phantom seeds, A:B or a comma list (default {EVALUATION_SEEDS.start}:"
                        f"{EVALUATION_SEEDS.stop}); others are refused unless reserved for evaluation")
    p.add_argument("--no-real-ct", action="store_true", help="leave out the real CT crop")
    p.add_argument("--oracle-volumes", type=int, default=None,
                   help="the first N labelled volumes the oracles run on (default: every labelled volume)")
    p.add_argument("--agents", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="one more agents curve besides the shipped checkpoints (repeatable)")
    p.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m], default=None,
                   help="comma list of methods to run (default all: anchors, rules, the agents' curves "
                        "as 'dmic', the oracle); the report always covers every method in the log")
    p.add_argument("--segmenter", default="builtin", choices=list(NAMED_WEIGHTS),
                   help="the diagnosis model: it finds the protected region and scores every decode "
                        "(default: the shipped default model); another one has a point log of its own")
    p.add_argument("--workers", type=int, default=None, help="parallel worker processes (default 2)")
    p.add_argument("--slabs", action="store_true",
                   help="pool three slabs per labelled volume: the protocol's slab and the 33 frames below and "
                        "above it (bits summed, mIoU averaged; about a third of one slab's noise, three times "
                        "the points); the real CT keeps its one slab")
    p.add_argument("--report-only", action="store_true", help="no new points: tables from what is done")
    p.add_argument("--restore-from", type=Path, default=None, metavar="FOLDER",
                   help="first add to the point logs the rows of FOLDER's copies (a report folder written by "
                        "dmic evaluate) that have this run's fingerprints")
    p.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.datasets.seeds import role_of
    from dmic_core.errors import DmicInputError
    from dmic_core.protocol.archive import archive_point_logs, restore_point_logs
    from dmic_core.protocol.report import write_report
    from dmic_core.protocol.run import (ALL_METHODS, ProtocolPlan, agents_curve, current_rows, fingerprint, log_path,
                                       row_key, run_protocol, shipped_agents)
    from dmic_core.protocol.volumes import evaluation_volumes

    bad = [s for s in args.seeds if role_of(s) is None or role_of(s).role != "evaluation"]
    if bad:
        raise DmicInputError(f"seeds {bad} are not reserved for evaluation (dmic_core.datasets.seeds): "
                             "a volume that trained or chose a model cannot evaluate it")
    agents = shipped_agents()
    for item in args.agents:
        name, _, path = item.partition("=")
        if not name or not Path(path).is_file():
            raise DmicInputError(f"--agents wants NAME=CHECKPOINT of an existing file, got {item!r}")
        agents[agents_curve(name)] = path
    start = time.perf_counter()
    volumes = evaluation_volumes(args.work / "volumes", args.seeds, real_ct=not args.no_real_ct)
    try:
        plan = ProtocolPlan(volumes, agents, oracle_volumes=args.oracle_volumes,
                            methods=tuple(args.methods or ALL_METHODS), segmenter=args.segmenter)
    except ValueError as exc:
        raise DmicInputError(str(exc)) from None

    moved = {}
    if args.slabs:
        from dmic_core.protocol.slabs import pooled_protocol_rows, slab_plans

        moved = slab_plans(plan, args.work)
    # label ("" or a slab offset) -> (fingerprint, log path): hashing the weights once per plan
    logs = {label: (fingerprint(p), log_path(p, args.work)) for label, p in {"": plan, **moved}.items()}
    if args.restore_from is not None:
        added = restore_point_logs(args.restore_from, dict(logs.values()))
        print(f"[evaluate] restored from {args.restore_from}: "
              + ", ".join(f"{n} +{k} rows" for n, k in added.items()), file=sys.stderr, flush=True)

    def rows_of(plan: ProtocolPlan) -> list[dict]:
        if args.report_only:
            from dmic_core.runs import PointLog

            path = log_path(plan, args.work)
            rows = current_rows(PointLog(path, row_key), plan)
            if not rows:  # another segmenter, slab or encoder than the log's (its fingerprint)
                raise DmicInputError(f"--report-only: no point of these volumes and models in {path}; "
                                     "run `dmic evaluate` without --report-only first")
            return rows
        return current_rows(run_protocol(plan, args.work, workers=args.workers), plan)

    rows = rows_of(plan)
    slabs = None
    if moved:
        rows = pooled_protocol_rows(rows, {k: rows_of(p) for k, p in moved.items()})
        slabs = {k: {v.name: list(v.slices) for v in p.volumes} for k, p in moved.items()}
    out = args.out or Path("docs/results/evaluation_slabs" if args.slabs else "docs/results/evaluation")
    after = sys.argv[sys.argv.index("evaluate") + 1:] if "evaluate" in sys.argv else []
    command = " ".join(["dmic evaluate", *(shlex.quote(a) for a in after)])
    paths = write_report(rows, plan, out, command=command, slabs=slabs,
                         wall_seconds=None if args.report_only else time.perf_counter() - start)
    archived = archive_point_logs(out, logs)
    print_json({"points_reported": len(rows), **{k: str(v) for k, v in paths.items()}, "point_logs": archived})
    return 0
