"""``dmic sweep``: rate-vs-accuracy points of several methods, BD against HEVC, a plotly figure."""

from __future__ import annotations

import sys
from pathlib import Path

from dmic_core.cli.common import add_task_coding_arguments, print_json
from dmic_core.defaults import LAMBDA_GRID, QP_GRID
from dmic_core.methods import METHOD_NAMES


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="rate-vs-mIoU sweep of several methods with BD table")
    parser.add_argument("input", help="CT volume")
    parser.add_argument("--label", help="ground-truth label (else the segmentation of the original is the reference)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--methods", default="hevc,dmic", help=f"comma list of {','.join(METHOD_NAMES)}")
    parser.add_argument("--qps", type=_floats, default=list(QP_GRID), help="base QPs / QP_I values")
    parser.add_argument("--lambdas", type=_floats, default=list(LAMBDA_GRID), help="DMIC lambdas")
    parser.add_argument("--slices", default=None, metavar="A:B")
    parser.add_argument("--segmenter", default="builtin")
    parser.add_argument("--mask", help="region to protect instead of the model's segmentation of the input")
    parser.add_argument("--agents", default=None, help="agent checkpoint (default: the shipped one)")
    parser.add_argument("--workers", type=int, default=None, help="parallel worker processes (default 2)")
    add_task_coding_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: every dmic command builds every parser (start-up, issue 17)
    from dmic_core.evaluation.bd import bd_table
    from dmic_core.io import load_volume
    from dmic_core.methods import default_specs
    from dmic_core.pipeline import TASK_CODING, CodingSetup
    from dmic_core.sweep import run_sweep, write_sweep
    from dmic_core.volume import parse_slices

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    n_frames = load_volume(args.input).n_frames
    slices = parse_slices(args.slices, n_frames, args.input)
    window = TASK_CODING.window if args.bit_depth == TASK_CODING.bit_depth else None
    setup = CodingSetup(codec=args.codec, preset=args.preset, bit_depth=args.bit_depth, window=window)
    specs = default_specs(methods, args.qps, args.lambdas)
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="sweep points", unit="pt", file=sys.stderr)

    def on_point(result, done, total):
        bar.set_postfix_str(f"{result.method}@{result.setting:g}: {result.bpp:.4f} bpp, mIoU {result.miou:.4f}")
        bar.update(1)

    points = run_sweep(args.input, args.label, specs, setup=setup, segmenter=args.segmenter, slices=slices,
                       workers=args.workers, agents=args.agents, on_point=on_point, roi=args.mask)
    bar.close()
    meta = {"input": str(args.input), "label": args.label, "slices": list(slices),
            "bit_depth": setup.bit_depth, "codec": setup.codec, "segmenter": args.segmenter}
    paths = write_sweep(args.out, points, meta)
    table = bd_table(points)
    print_json({"outputs": {k: str(v) for k, v in paths.items()},
                "bd": table.to_dict(orient="records") if not table.empty else []})
    return 0
