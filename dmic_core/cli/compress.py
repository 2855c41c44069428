"""``dmic compress``: one volume, one method at one setting (DMIC: lambda), with task accuracy."""

from __future__ import annotations

import os
import time
from pathlib import Path

from dmic_core.cli.common import add_task_coding_arguments, print_json
from dmic_core.methods import METHOD_NAMES


def process_seconds() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere 0.0): the start-up stage."""
    try:
        with open("/proc/self/stat") as fh:
            started_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def register(subparsers) -> None:
    parser = subparsers.add_parser("compress", help="code a volume with DMIC (or a baseline) and score it")
    parser.add_argument("input", help="CT volume")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--method", default="dmic", choices=METHOD_NAMES)
    parser.add_argument("--lambda", dest="lam", type=float, default=10.0,
                        help="DMIC trade-off weight 0..100 (higher keeps more accuracy)")
    parser.add_argument("--qp", type=float, default=27, help="base QP / QP_I for non-DMIC methods")
    parser.add_argument("--label", help="ground-truth label: accuracy is measured against it")
    parser.add_argument("--mask", help="region to protect instead of the model's segmentation of the input")
    parser.add_argument("--segmenter", default="builtin", help="builtin, builtin-bf16 (about 1.5x faster U-Net, masks not bit-identical), builtin-lite (the lighter model: "
                             "about 3x faster U-Net, its own results; assets/segmenter_lite.md), gt (needs --label) or a TorchScript .pt")
    parser.add_argument("--agents", default=None, help="agent checkpoint (default: the shipped one)")
    parser.add_argument("--slices", default=None, metavar="A:B")
    add_task_coding_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: every dmic command builds every parser (start-up, issue 17);
    # the start-up stage runs from the process's start to the end of these imports
    from concurrent.futures import ThreadPoolExecutor

    from dmic_core.evaluation import Case, make_reference
    from dmic_core.io import load_label, load_volume
    from dmic_core.methods import PointSpec
    from dmic_core.pipeline import TASK_CODING, CodingSetup
    from dmic_core.runs import run_point
    from dmic_core.segmentation import load_segmenter
    from dmic_core.volume import parse_slices

    seconds = {"startup": process_seconds()}
    mark = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="model-loader") as pool:
        # the model (torch's import, about 1 s, and the weights) loads on the second core while the
        # files are read; "gt" needs the label, so it is built after
        model = None if args.segmenter == "gt" else pool.submit(load_segmenter, args.segmenter)
        volume = load_volume(args.input)  # on bad input the error is raised once the loader is done
        label = load_label(args.label, like=volume) if args.label else None
        roi = load_label(args.mask, like=volume) if args.mask else None
        start, stop = parse_slices(args.slices, volume.n_frames, args.input)
        if (start, stop) != (0, volume.n_frames):
            volume = volume.slab(start, stop)
            label = None if label is None else label[start:stop]
            roi = None if roi is None else roi[start:stop]
        seconds["read"] = time.perf_counter() - mark
        mark = time.perf_counter()
        segmenter = load_segmenter("gt", label=label) if model is None else model.result()
    # the original is segmented once: the agents' mask (unless --mask) and the accuracy reference
    reference = make_reference(segmenter, volume, label)
    if roi is not None:
        reference.roi = roi
    seconds["mask"] = time.perf_counter() - mark
    case = Case(volume, label, segmenter, reference, Path(args.input).name)
    window = TASK_CODING.window if args.bit_depth == TASK_CODING.bit_depth else None
    setup = CodingSetup(codec=args.codec, preset=args.preset, bit_depth=args.bit_depth, window=window)
    setting = args.lam if args.method == "dmic" else args.qp
    options = {"agents": args.agents} if args.method == "dmic" and args.agents else {}
    result = run_point(case, PointSpec(args.method, setting), setup=setup, out_dir=args.out,
                       stage_seconds=seconds, **options)
    print_json({**result.row(), "qp_i": None if result.paper_frame_qps is None else result.paper_frame_qps[0],
                "out": str(args.out)})
    return 0
