"""``dmic segment INPUT --out MASK.nii.gz``: coronary-artery mask of a CT volume, on its grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dmic_core.cli.common import print_json
from dmic_core.errors import DmicInputError


def register(subparsers) -> None:
    parser = subparsers.add_parser("segment", help="segment the coronary arteries of a CT volume")
    parser.add_argument("input", help="CT volume (NIfTI, DICOM folder or .zip, NRRD/MHA)")
    parser.add_argument("--out", required=True, type=Path, help="mask to write (.nii or .nii.gz), uint8 0/1")
    parser.add_argument("--model", default="builtin",
                        help="builtin (shipped U-Net), builtin-bf16 (the same in bfloat16: faster, not bit-identical), "
                             "builtin-lite (the lighter shipped U-Net), gt (needs --label), or a TorchScript/weights .pt")
    parser.add_argument("--label", help="reference label on the input's grid: scores are reported")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from dmic_core.io import load_label, load_volume, save_nifti
    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.segmentation import load_segmenter

    if not args.out.name.lower().endswith((".nii", ".nii.gz")):
        raise DmicInputError("mask output needs a .nii or .nii.gz name", args.out)
    if args.batch_size is not None and args.batch_size < 1:
        raise DmicInputError(f"--batch-size must be >= 1, got {args.batch_size}")
    volume = load_volume(args.input)
    label = load_label(args.label, like=volume) if args.label else None
    kwargs = {}
    if args.model != "gt":
        if args.batch_size is not None:
            kwargs["batch_size"] = args.batch_size
        if args.threads is not None:
            kwargs["threads"] = args.threads
    segmenter = load_segmenter(args.model, label=label, **kwargs)
    t0 = time.perf_counter()
    mask = segmenter.segment(volume)
    seconds = time.perf_counter() - t0
    out = save_nifti(volume, mask.astype(np.uint8), args.out)
    voxels = int(np.count_nonzero(mask))
    result = {
        "input": str(args.input),
        "out": str(out),
        "model": segmenter.name,
        "shape_zyx": list(mask.shape),
        "voxels": voxels,
        "fraction": voxels / mask.size,
        "volume_ml": voxels * float(np.prod(volume.spacing)) / 1000.0,
        "seconds": round(seconds, 3),
    }
    if label is not None:
        result["scores"] = segmentation_scores(mask, label)
    print_json(result)
    return 0
