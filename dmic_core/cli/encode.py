"""``dmic encode``: code a volume with forced frame QPs and an optional per-CTU offset map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmic_core.cli.common import add_coding_arguments, print_json
from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps
from dmic_core.errors import DmicInputError
from dmic_core.volume import parse_slices


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "encode", help="code a volume as low-delay-P HEVC (QP per frame, optional QP offset per CTU)")
    parser.add_argument("input", help="CT volume")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--qp", type=int, default=27, help="paper QP_I of the first frame (P frames follow "
                        "the paper's GOP-8 rule); paper QPs are 8-bit QPs over a 1024-HU window")
    parser.add_argument("--slices", default=None, metavar="A:B", help="code only frames A..B-1")
    add_coding_arguments(parser)
    maps = parser.add_mutually_exclusive_group()
    maps.add_argument("--ctu-dqp", type=Path, metavar="MAP.npy",
                      help="integer QP offsets, shape (frames, ceil(H/64), ceil(W/64))")
    maps.add_argument("--mask", type=Path, help="mask volume: CTUs holding mask in a frame are foreground")
    parser.add_argument("--fg-dqp", type=int, default=0, help="offset of foreground CTUs (with --mask)")
    parser.add_argument("--bg-dqp", type=int, default=6, help="offset of background CTUs (with --mask)")
    parser.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: every dmic command builds every parser (start-up, issue 17)
    from dmic_core.evaluation.points import write_point_folder
    from dmic_core.io import load_label, load_volume
    from dmic_core.maps import mask_ctu_dqp
    from dmic_core.pipeline import CodingSetup, code_volume

    volume = load_volume(args.input)
    start, stop = parse_slices(args.slices, volume.n_frames, args.input)
    if (start, stop) != (0, volume.n_frames):
        volume = volume.slab(start, stop)
    n, h, w = volume.shape
    ctu_dqp = None
    mask = None
    if args.ctu_dqp is not None:
        try:
            ctu_dqp = np.load(args.ctu_dqp)
        except (OSError, ValueError) as exc:
            raise DmicInputError(f"not a readable .npy array ({exc})", args.ctu_dqp) from None
        expected = (n, *ctu_grid_shape(h, w))
        if ctu_dqp.shape != expected or not np.issubdtype(ctu_dqp.dtype, np.integer):
            raise DmicInputError(f"CTU map must be integers of shape {expected}, got {ctu_dqp.dtype} "
                                 f"{ctu_dqp.shape}", args.ctu_dqp)
    elif args.mask is not None:
        full = load_volume(args.input) if (start, stop) != (0, volume.n_frames) else volume
        mask = load_label(args.mask, like=full)[start:stop]
        ctu_dqp = mask_ctu_dqp(mask, args.fg_dqp, args.bg_dqp)
    setup = CodingSetup(codec=args.codec, preset=args.preset, bit_depth=args.bit_depth, window=args.window)
    frame_qps = dmic_frame_qps(args.qp, n)
    coded = code_volume(volume, frame_qps=frame_qps, ctu_dqp=ctu_dqp, setup=setup)
    result = {"input": str(args.input), "slices": [start, stop], "qp_i": args.qp,
              **coded.summary(volume, mask), "outputs": {"stream": "stream.hevc", "recon": "recon.nii.gz"}}
    write_point_folder(args.out, coded, result)
    print_json({k: result[k] for k in ("bits", "bytes", "bpp", "compression_ratio", "psnr_hu",
                                       "mean_abs", "max_abs", "encode_seconds", "decode_seconds")})
    return 0
