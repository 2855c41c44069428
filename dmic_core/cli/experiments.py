"""``dmic experiments TABLE... --data DIR --out DIR``: the paper's Tables I-IV and Fig. 2 on our data."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from dmic_core.cli.common import CODEC_CHOICES, print_json


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


#: ``dmic_core.experiments.config.TABLES``, written out: importing the experiments package
#: (pandas, the tuning code) took 1.1 s of every dmic command's start-up, since every command builds
#: every parser (issue 17). tests/test_compress_identical.py checks the two agree.
TABLES = ("table1", "table2", "table3", "table4", "fig2")


def register(subparsers) -> None:
    from dmic_core.defaults import LAMBDA_GRID, QP_GRID

    parser = subparsers.add_parser(
        "experiments", help="regenerate the paper's tables (I-IV) and Fig. 2 with real encodes on held-out volumes")
    parser.add_argument("tables", nargs="+", choices=[*TABLES, "all"], help="what to produce")
    parser.add_argument("--data", required=True, help="labelled target dataset (ImageCAS layout or CSV)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSV / Markdown / HTML outputs")
    parser.add_argument("--extra", action="append", default=[], metavar="VOLUME",
                        help="an unlabelled volume (e.g. real CT) also measured for Table I, IV and Fig. 2a "
                             "(reference: segmentation of the original); repeatable")
    parser.add_argument("--work-dir", default=None, help="checkpoints, logs and point store (default work_dirs/experiments)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--shots", type=_ints, default=(1, 3, 5), help="comma-separated K values (Table II)")
    parser.add_argument("--iterations", type=int, default=1000, help="tuning iterations of the main runs")
    parser.add_argument("--variant-iterations", "--ablation-iterations", dest="variant_iterations", type=int,
                        default=None, help="iterations of the ablation runs: Table II, Table III, Fig. 2b/c "
                                           "(default: --iterations)")
    parser.add_argument("--ablation-cases", type=int, default=None,
                        help="test volumes the ablation curves are evaluated on (default: all --test-cases)")
    parser.add_argument("--test-cases", type=int, default=3, help="how many of the 10 test volumes are evaluated")
    parser.add_argument("--slab", type=int, default=33, help="frames of each test clip (heart slab)")
    parser.add_argument("--qps", type=_floats, default=QP_GRID, help="paper QPs of HEVC / rate control / hand-crafted")
    parser.add_argument("--lambdas", type=_floats, default=LAMBDA_GRID, help="DMIC lambdas")
    parser.add_argument("--workers", type=int, default=2, help="encode worker processes")
    parser.add_argument("--train-workers", type=int, default=2, help="tuning runs in parallel")
    parser.add_argument("--from", dest="pretrained", default=None, help="pretrained agents (default: assets)")
    parser.add_argument("--segmenter", default="builtin")
    parser.add_argument("--clip-frames", type=int, default=9)
    parser.add_argument("--clips-per-volume", type=int, default=2)
    parser.add_argument("--preset", default="veryfast", help="x265 preset of the training surrogate's encodes")
    parser.add_argument("--codec", default="x265", choices=CODEC_CHOICES,
                        help="HEVC engine of the evaluation encodes (hm: scripts/setup.sh --with-hm; "
                             "the training surrogate stays x265's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the A2C runs")
    parser.add_argument("--cache-dir", default=None)
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.experiments import run_experiments
    from dmic_core.experiments.config import DEFAULT_WORK_DIR, TABLES, ExperimentConfig
    from dmic_core.finetune.config import DEFAULT_CACHE_DIR

    tables = list(TABLES) if "all" in args.tables else list(dict.fromkeys(args.tables))
    cfg = ExperimentConfig(
        data=str(args.data), out=str(args.out), work_dir=str(args.work_dir or DEFAULT_WORK_DIR),
        extra_volumes=tuple(args.extra), split_seed=args.split_seed, shots=tuple(args.shots),
        iterations=args.iterations,
        variant_iterations=args.variant_iterations if args.variant_iterations is not None else args.iterations,
        test_cases=args.test_cases, ablation_cases=args.ablation_cases, slab=args.slab, qps=tuple(args.qps), lambdas=tuple(args.lambdas),
        workers=args.workers, train_workers=args.train_workers, pretrained=args.pretrained,
        segmenter=args.segmenter, clip_frames=args.clip_frames, clips_per_volume=args.clips_per_volume,
        preset=None if args.preset in ("", "none", "default") else args.preset, seed=args.seed,
        codec=args.codec,
        cache_dir=str(args.cache_dir or DEFAULT_CACHE_DIR))
    command = "dmic " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["experiments"] else None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run_experiments(tables, cfg, command=command, log=log)
    print_json({"out": str(args.out), "tables": {t: f.to_dict(orient="records") for t, f in results.items()}})
    return 0
