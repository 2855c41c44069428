"""``dmic info INPUT``: geometry and HU statistics of a volume, as JSON."""

from __future__ import annotations

import numpy as np

from dmic_core.cli.common import print_json
from dmic_core.volume import HU_MAX, HU_MIN


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="geometry and HU statistics of a CT volume")
    parser.add_argument("input", help="NIfTI file, DICOM folder or .zip, NRRD/MHA/MHD")
    parser.set_defaults(func=run)


def volume_info(volume) -> dict:
    hu = volume.hu
    p = np.percentile(hu, [1, 5, 25, 50, 75, 95, 99])
    return {
        "source": volume.source,
        "frames": volume.n_frames,
        "shape_zyx": list(volume.shape),
        "spacing_zyx_mm": list(volume.spacing),
        "file_shape": list(volume.file_shape),
        "affine": np.round(volume.affine, 6).tolist(),
        "hu": {
            "min": int(hu.min()), "max": int(hu.max()), "mean": float(hu.mean()), "std": float(hu.std()),
            "percentiles": dict(zip(["p1", "p5", "p25", "p50", "p75", "p95", "p99"], map(float, p))),
            "fraction_outside_-1024..3071": float(np.mean((hu < HU_MIN) | (hu > HU_MAX))),
        },
        "raw_bytes_16bit": int(hu.size * 2),
        "meta": volume.meta,
    }


def run(args) -> int:
    from dmic_core.io import load_volume  # here: every dmic command builds every parser

    print_json(volume_info(load_volume(args.input)))
    return 0
