"""``dmic phantom --seed N --out DIR``: synthetic CCTA volumes with coronary labels, ImageCAS layout."""

from __future__ import annotations

import time

from dmic_core.cli.common import print_json
from dmic_core.errors import DmicInputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom", help="write synthetic CCTA volumes with coronary labels ({id}.img/.label.nii.gz)")
    parser.add_argument("--seed", type=int, required=True, help="first seed (deterministic anatomy, noise, geometry)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--slices", type=int, default=None,
                        help="number of 0.5 mm slices (default: drawn per seed, 128-275)")
    parser.add_argument("--count", type=int, default=1, help="number of consecutive seeds to write (default 1)")
    parser.add_argument("--size", type=int, default=512, help="in-plane matrix (default 512; FOV is kept)")
    parser.set_defaults(func=run)


def case_id(seed: int) -> str:
    """ImageCAS-style case name of a phantom seed."""
    return f"phantom-{seed:04d}"


def _check(args) -> None:
    if args.count < 1:
        raise DmicInputError(f"--count must be at least 1, got {args.count}")
    if args.slices is not None and not 1 <= args.slices <= 2048:
        raise DmicInputError(f"--slices must be between 1 and 2048, got {args.slices}")
    if not 32 <= args.size <= 2048:
        raise DmicInputError(f"--size must be between 32 and 2048, got {args.size}")
    if args.seed < 0:
        raise DmicInputError(f"--seed must be non-negative, got {args.seed}")


def run(args) -> int:
    from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair

    _check(args)
    cases = []
    for seed in range(args.seed, args.seed + args.count):
        t0 = time.perf_counter()
        volume, label = generate_phantom(seed, args.slices, size=args.size)
        img_path, label_path = write_imagecas_pair(volume, label, args.out, case_id(seed))
        cases.append({
            "seed": seed, "case_id": case_id(seed), "image": str(img_path), "label": str(label_path),
            "shape_zyx": list(volume.shape), "spacing_zyx_mm": [round(s, 4) for s in volume.spacing],
            "label_fraction": float(label.mean()), "seconds": round(time.perf_counter() - t0, 2),
        })
    print_json({"cases": cases})
    return 0
