"""The built-in segmenter on real CTA: the TotalSegmentator aorta crop (1.5 mm, no coronary labels).

There is no coronary reference on this scan, so this reports *behaviour*: how much the model
marks, in which structures (overlap with the TotalSegmentator aorta / branch masks shipped with
the crop), at which HU, and where, plus a figure. The crop is resampled to ~0.4 mm in-plane
(the training pixel size; the segmenter's ``resample="auto"`` does this on the fly and returns
the mask on the 1.5 mm grid) and, with ``--z-mm``, also along z by linear interpolation so that
adjacent input frames are as far apart as in training.

Usage::

    python bench/segment_real_crop.py [--crop ../shared/data/cta-aorta-crop] [--z-mm 0.5]

Writes ``bench/results/segment_real_crop.json`` and ``bench/results/segment_real_crop.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from dmic_core.defaults import shared_data_dir

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CROP = shared_data_dir() / "cta-aorta-crop"
STRUCTURES = ("aorta", "brachiocephalic_trunk", "common_carotid_artery_left")


def main(argv: Sequence[str] | None = None) -> int:
    from scipy import ndimage

    from dmic_core.io import load_label, load_volume
    from dmic_core.io.orientation import canonical_volume
    from dmic_core.segmentation import load_segmenter

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=Path, default=DEFAULT_CROP)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--z-mm", type=float, default=None,
                        help="also resample along z to this spacing before segmenting (mask comes back to 1.5 mm)")
    parser.add_argument("--out", type=Path, default=RESULTS / "segment_real_crop.json")
    args = parser.parse_args(argv)

    vol = load_volume(args.crop / "ct.nii.gz")
    masks = {name: load_label(args.crop / f"{name}.nii.gz", vol) for name in STRUCTURES
             if (args.crop / f"{name}.nii.gz").is_file()}
    seg = load_segmenter(args.model)
    t0 = time.perf_counter()
    if args.z_mm:
        fz = vol.spacing[0] / args.z_mm
        hu_z = ndimage.zoom(vol.hu.astype(np.float32), (fz, 1, 1), order=1).round().astype(np.int16)
        up = canonical_volume(hu_z, (args.z_mm, vol.spacing[1], vol.spacing[2]))
        prob_up = seg.probabilities(up)
        prob = ndimage.zoom(prob_up, (vol.n_frames / prob_up.shape[0], 1, 1), order=1)
        mask = (prob >= 0.5).astype(np.uint8)
    else:
        mask = seg.segment(vol)
    seconds = time.perf_counter() - t0
    zoom = seg.zoom_for(vol) if hasattr(seg, "zoom_for") else 1.0

    body = vol.hu > -500
    n = int(mask.sum())
    out: dict = {"model": seg.name, "shape_zyx": list(vol.shape), "spacing_mm": list(vol.spacing),
                 "in_plane_zoom": zoom, "z_resampled_mm": args.z_mm, "seconds": round(seconds, 2),
                 "voxels": n, "fraction_of_volume": n / mask.size,
                 "fraction_of_body": n / max(1, int(body.sum())), "volume_ml": n * float(np.prod(vol.spacing)) / 1000}
    inside = {}
    anywhere = np.zeros_like(mask, dtype=bool)
    for name, m in masks.items():
        m = m > 0
        anywhere |= m
        inside[name] = {"marked_voxels": int((mask.astype(bool) & m).sum()),
                        "share_of_marks": float((mask.astype(bool) & m).sum() / max(1, n)),
                        "share_of_structure_marked": float((mask.astype(bool) & m).sum() / max(1, m.sum()))}
    rest = mask.astype(bool) & ~anywhere
    inside["elsewhere"] = {"marked_voxels": int(rest.sum()), "share_of_marks": float(rest.sum() / max(1, n))}
    out["by_structure"] = inside
    if n:
        hu = vol.hu[mask.astype(bool)]
        out["marked_hu_percentiles"] = dict(zip(("p5", "p25", "p50", "p75", "p95"),
                                                map(float, np.percentile(hu, [5, 25, 50, 75, 95]))))
        lab, k = ndimage.label(rest)
        sizes = np.sort(np.bincount(lab.ravel())[1:])[::-1] if k else np.array([])
        out["elsewhere_components"] = {"count": int(k), "largest_voxels": sizes[:10].tolist()}
        zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(1))
        out["marked_z_range_mm"] = [float(zs[0] * vol.spacing[0]), float(zs[-1] * vol.spacing[0])]
        if k:
            cz = ndimage.center_of_mass(rest, lab, range(1, min(k, 10) + 1))
            out["elsewhere_component_centres_zyx_vox"] = [[round(c, 1) for c in cc] for cc in cz]
    # where the marks lie, by neighbourhood: lung (>30 % of a 9-mm box is air/lung), next to bone
    # (>700 HU within 3 mm), or the mediastinum (heart surface, great vessels, chest wall)
    vox = max(1, int(round(4.5 / vol.spacing[1])))
    lungish = ndimage.uniform_filter((vol.hu < -500).astype(np.float32), size=2 * vox + 1) > 0.3
    bone_near = ndimage.maximum_filter(vol.hu, size=2 * max(1, int(round(3.0 / vol.spacing[1]))) + 1) > 700
    m = mask.astype(bool)
    region = {"lung_vessels": m & lungish, "bone_adjacent": m & ~lungish & bone_near & ~anywhere}
    region["mediastinum_heart"] = m & ~lungish & ~region["bone_adjacent"] & ~anywhere
    out["by_region"] = {k: {"voxels": int(v.sum()), "share_of_marks": float(v.sum() / max(1, n))}
                        for k, v in region.items()}
    heart_marks = region["mediastinum_heart"]
    lab_h, k_h = ndimage.label(heart_marks)
    if k_h:
        sz = np.bincount(lab_h.ravel())[1:]
        out["mediastinum_heart_components"] = {"count": int(k_h), "largest_voxels": np.sort(sz)[::-1][:10].tolist(),
                                               "median_hu": float(np.median(vol.hu[heart_marks]))}
    contrast = (vol.hu > 200) & (vol.hu < 700) & ~anywhere
    out["contrast_voxels_outside_aorta_masks"] = int(contrast.sum())
    out["share_of_those_marked"] = float((mask.astype(bool) & contrast).sum() / max(1, contrast.sum()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    _figure(vol, mask, masks, args.out.with_suffix(".png"))
    return 0


def _figure(vol, mask: np.ndarray, masks: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    red = ListedColormap(["red"])
    aorta = masks.get("aorta")
    # three axial levels: aortic root / heart (most aorta), mid-heart and lower heart
    z_aorta = int(np.argmax(aorta.reshape(aorta.shape[0], -1).sum(1))) if aorta is not None else vol.n_frames // 2
    picks = sorted({int(np.clip(z, 0, vol.n_frames - 1)) for z in (z_aorta - 40, z_aorta - 20, z_aorta)})
    fig, axes = plt.subplots(1, len(picks) + 2, figsize=(4 * (len(picks) + 2), 4.6))
    for ax, z in zip(axes, picks):
        ax.imshow(np.clip(vol.hu[z], -200, 800), cmap="gray")
        ax.imshow(np.ma.masked_where(mask[z] == 0, mask[z]), cmap=red, alpha=0.85, vmin=0, vmax=1)
        if aorta is not None and aorta[z].any():
            ax.contour(aorta[z], levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(f"axial z={z} ({int(mask[z].sum())} marked voxels)")
        ax.axis("off")
    aspect = vol.spacing[0] / vol.spacing[2]
    ct = np.clip(vol.hu.max(axis=1)[::-1], -200, 1000)
    axes[-2].imshow(ct, cmap="gray", aspect=aspect)
    axes[-2].set_title("coronal CT MIP")
    proj = mask.sum(axis=1)[::-1].astype(np.float32)
    axes[-1].imshow(ct, cmap="gray", aspect=aspect, alpha=0.5)
    axes[-1].imshow(np.ma.masked_where(proj == 0, proj), cmap="hot", aspect=aspect)
    axes[-1].set_title("coronal projection of the marks")
    for ax in axes[-2:]:
        ax.axis("off")
    fig.suptitle("Built-in U-Net on the real CTA crop (1.5 mm, resampled to the training pixel size): "
                 "red = marked vessel, cyan = TotalSegmentator aorta")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

if __name__ == "__main__":
    raise SystemExit(main())
