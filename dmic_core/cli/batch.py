"""``dmic batch``: every (volume, method, setting) of a dataset as a resumable job, BD tables out.

Exit status: 0 every task done; 1 some task failed or was cancelled (each listed on stderr in one
line); 2 the dataset or settings cannot be used; 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dmic_core.cli.common import CODEC_CHOICES, print_json
from dmic_core.errors import DmicInputError
from dmic_core.defaults import BIT_DEPTHS, LAMBDA_GRID, QP_GRID, default_window
from dmic_core.methods import METHOD_NAMES
from dmic_core.segmentation.config import NAMED_WEIGHTS


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DmicInputError(f"expected a comma list of numbers, got {text!r}") from None


def _slices(text: str) -> str:
    parts = text.split(":")
    try:
        if len(parts) != 2 or not all(p.strip() == "" or int(p) == int(p) for p in parts):
            raise ValueError
    except ValueError:
        raise DmicInputError(f"--slices must look like A:B, got {text!r}") from None
    return text


def register(subparsers) -> None:
    parser = subparsers.add_parser("batch", help="rate-vs-accuracy points of a whole dataset as a resumable job",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="folder in the ImageCAS layout ({id}.img.nii.gz, {id}.label.nii.gz) "
                                        "or a CSV of image,label rows (paths relative to the CSV)")
    parser.add_argument("--out", required=True, type=Path, help="batch folder: jobs.sqlite, points/, tables")
    parser.add_argument("--methods", default="hevc,dmic", help=f"comma list of {','.join(METHOD_NAMES)}")
    parser.add_argument("--qps", default=",".join(str(q) for q in QP_GRID),
                        help="base QPs / QP_I values (comma list)")
    parser.add_argument("--lambdas", default=",".join(f"{v:g}" for v in LAMBDA_GRID),
                        help="DMIC lambdas (comma list)")
    parser.add_argument("--executor", default="local", choices=["local", "ray"],
                        help="local worker processes (default) or Ray")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (e.g. ray://head:10001); default: a private local runtime")
    parser.add_argument("--segmenter", default="builtin", choices=[*NAMED_WEIGHTS, "gt"],
                        help="scores decoded volumes: the shipped U-Net, or the label itself (upper bound)")
    parser.add_argument("--slices", default=None, metavar="A:B", help="frames kept of every volume")
    parser.add_argument("--workers", type=int, default=None,
                        help="concurrent tasks (default: $DMIC_JOB_WORKERS or half the cores; Ray: all CPUs)")
    parser.add_argument("--codec", default="x265", choices=CODEC_CHOICES)
    parser.add_argument("--bit-depth", type=int, default=None, choices=BIT_DEPTHS,
                        help="coded depth (default: the task coding setup's)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--agents", default=None, help="DMIC agent checkpoint (default: the shipped one)")
    parser.add_argument("--retry-failed", action="store_true", help="give failed tasks of an earlier run another go")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.batch import BatchConfig, run_batch

    if args.address and args.executor != "ray":
        raise DmicInputError("--address needs --executor ray")
    if args.workers is not None and args.workers < 1:
        raise DmicInputError("--workers must be at least 1")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    setup: dict = {"codec": args.codec}
    if args.bit_depth is not None:
        setup["bit_depth"] = args.bit_depth
        setup["window"] = list(default_window(args.bit_depth))  # the mapping's own rule, recorded explicitly
    if args.preset:
        setup["preset"] = args.preset
    config = BatchConfig(methods=methods, qps=tuple(_floats(args.qps)), lambdas=tuple(_floats(args.lambdas)),
                         segmenter=args.segmenter, slices=_slices(args.slices) if args.slices else None,
                         setup=setup, agents=args.agents)
    result = run_batch(args.dataset, args.out, config, executor=args.executor, address=args.address,
                       workers=args.workers, retry_failed=args.retry_failed, progress=not args.no_progress)
    print_json({"job": result.job_id, "counts": result.counts, "executor": result.executor,
                "workers": result.workers, "seconds": round(result.seconds, 2), "tasks_run": result.tasks_run,
                "tasks_per_second": round(result.tasks_per_second, 4),
                "outputs": {k: str(v) for k, v in result.outputs.items()}})
    for f in result.failures:
        print(f"dmic batch: {f['case_id']} {f['method']} {f['setting']:g} failed after {f['attempts']} "
              f"attempt(s): {f['error']}", file=sys.stderr)
    if result.interrupted:
        print("dmic batch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if result.counts["done"] == sum(result.counts.values()) else 1
