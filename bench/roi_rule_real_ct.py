"""What a small-component rule drops from the model's mask of the real CT, and where it lies (issue 13).

The protocol's real CT (the shared crop at CCTA geometry, slab ``REAL_CT_SLICES``: 100:133 since
2026-12-01, 60:93 when ``bench/results/roi_rule_real_ct.json`` was written; the JSON names its
slab) has no coronary label, so
its BD-rate is scored against the model's own mask of the original. A rule that drops part of that
mask loses mIoU there by construction; this bench tells whether what it drops is plausibly vessel.
It segments the slab as the protocol does, applies ``drop_small_components(..., keep_ends=True)``
(what an agents checkpoint with ``region.min_component_voxels`` does to its clip) and sorts every
mask voxel by the crop's TotalSegmentator masks (model predictions, not hand labels): inside a
great vessel's lumen (aorta, pulmonary artery, brachiocephalic trunk, left carotid), more than
10 mm outside the heart, or on the heart's surface outside those lumens (within 10 mm of it, where
the data README says coronaries run). It codes nothing and chooses nothing: it reads an
evaluation volume, so its figures may explain a result, never pick a setting.

Usage::

    python bench/roi_rule_real_ct.py [--min-voxels 500] [--work work_dirs/evaluate]

With ``--flip`` the rules are the flip-averaged masks of ``bench/roi_ctu_rules.py --flip`` instead
(:mod:`dmic_core.segmentation.flips`), and it also counts the model's mask CTUs each keeps::

    python bench/roi_rule_real_ct.py --flip --out bench/results/roi_flip_real_ct.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-voxels", type=int, action="append", default=None,
                        help="component sizes to try (repeatable; default 50, 200, 500)")
    parser.add_argument("--flip", action="store_true",
                        help="the flip-averaged masks (bench/roi_ctu_rules.py --flip) instead of component rules")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/evaluate"), help="dmic evaluate's work folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "roi_rule_real_ct.json")
    args = parser.parse_args(argv)

    from scipy import ndimage

    from dmic_core.io import load_volume
    from dmic_core.maps import drop_small_components, foreground_ctus
    from dmic_core.protocol.volumes import REAL_CT_SLICES, REAL_CT_ZOOM, real_ct_ccta
    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation.plausibility import SHELL_MM, signed_distance
    from dmic_core.segmentation.realdata import load_crop

    try:
        crop = load_crop()
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc} (set DMIC_SHARED_DATA)") from None
    spec = real_ct_ccta(args.work / "volumes")
    zoomed = load_volume(spec.image)
    first, last = REAL_CT_SLICES
    lumen = crop.great_vessels | crop.other_vessels
    signed = signed_distance(crop.heart, crop.spacing)

    def in_plane(a: np.ndarray) -> np.ndarray:  # the zoomed grid: every pixel split into ZOOM x ZOOM
        return np.repeat(np.repeat(a[first:last], REAL_CT_ZOOM, axis=1), REAL_CT_ZOOM, axis=2)

    distance, in_lumen = in_plane(signed), in_plane(lumen)
    segmenter, slab = load_segmenter("builtin"), zoomed.slab(first, last)
    mask = segmenter.segment(slab) > 0
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]

    def where(sel: np.ndarray) -> dict:
        d, lu = distance[sel], in_lumen[sel]
        n = max(1, int(sel.sum()))
        return {"voxels": int(sel.sum()), "great_vessel_lumen": float(lu.sum() / n),
                "far_outside_heart": float((d > SHELL_MM).sum() / n),
                "heart_surface_not_lumen": float(((np.abs(d) <= SHELL_MM) & ~lu).sum() / n)}

    out = {"command": "python bench/roi_rule_real_ct.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
           "volume": spec.name, "slices": [first, last], "spacing_mm": list(zoomed.spacing),
           "components": int(count), "largest_components": sizes[:10].tolist(),
           "mask": {**where(mask), "ctus": int(foreground_ctus(mask).sum())}, "rules": {}}
    print(f"{spec.name} {first}:{last}: {count} components, largest {sizes[:5].tolist()}; mask {out['mask']}")
    if args.flip:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from roi_ctu_rules import flip_masks

        rules = {name: m > 0 for name, m in flip_masks(segmenter, slab).items()}
    else:
        rules = {f"components:{n}": drop_small_components(mask, n, keep_ends=True) > 0
                 for n in args.min_voxels or [50, 200, 500]}
    model_ctus = foreground_ctus(mask)
    for name, rule in rules.items():
        kept = mask & rule  # the model's voxels the rule keeps
        ctus = foreground_ctus(rule)
        out["rules"][name] = {"kept": {**where(kept), "ctus": int(foreground_ctus(kept).sum())},
                              "dropped": where(mask & ~rule), "added": where(rule & ~mask),
                              "ctus": int(ctus.sum()),
                              "model_ctus_kept": float((ctus & model_ctus).sum() / max(1, model_ctus.sum()))}
        r = out["rules"][name]
        print(f"{name}: {r['ctus']} CTUs, {r['model_ctus_kept']:.0%} of the model's kept; "
              f"kept {r['kept']}; dropped {r['dropped']}; added {r['added']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
