"""False vessels of a coronary segmenter on the real CT crop (no coronary labels needed).

On every real volume the project has, the TotalSegmentator aorta crop at its native 1.5 mm and
resampled to CCTA-like 0.375 mm pixels and 0.5 mm frames, the mask is measured against anatomy
(:mod:`dmic_core.segmentation.plausibility`): volume farther than 10 mm from the heart, inside the
aorta / pulmonary-artery lumens, in aerated lung, in bone, outside the body, the mask volume and
its share on the heart shell (within 10 mm of the heart surface). Each is given for the whole
crop, the evaluation frames the retrained model never saw (``realdata.EVAL_FRAMES``), the
training frames, and the abdomen proxy (frames 0-17, no heart within 28 mm).

Usage::

    python bench/segment_plausibility.py [--model builtin|W.pt] [--tag before]

Writes ``bench/results/segment_plausibility_TAG.json`` and ``.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CCTA_SPACING = (0.5, 0.375, 0.375)


def resample_ccta(hu: np.ndarray, spacing: Sequence[float], target: Sequence[float] = CCTA_SPACING):
    """Linear resampling to about ``target`` spacing, end voxels kept in place (``grid_mode=False``).

    Returns the int16 volume and its exact spacing ``(N-1) s / (M-1)`` per axis.
    """
    from scipy import ndimage

    n = hu.shape
    m = [int(round((n[a] - 1) * spacing[a] / target[a])) + 1 for a in range(3)]
    exact = tuple((n[a] - 1) * spacing[a] / (m[a] - 1) for a in range(3))
    hz = ndimage.zoom(hu.astype(np.float32), (m[0] / n[0], 1, 1), order=1, grid_mode=False)
    out = np.empty(m, np.int16)
    for z0 in range(0, m[0], 32):
        part = ndimage.zoom(hz[z0:z0 + 32], (1, m[1] / n[1], m[2] / n[2]), order=1, grid_mode=False)
        out[z0:z0 + 32] = np.rint(part)
    return out, exact


def main(argv: Sequence[str] | None = None) -> int:
    from dmic_core.io.orientation import canonical_volume
    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation.plausibility import FALSE_CATEGORIES, false_vessel_report
    from dmic_core.segmentation.realdata import ABDOMEN_FRAMES, EVAL_FRAMES, TRAIN_FRAMES, load_crop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--tag", default="current")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", default="native,ccta", help="comma list of native, ccta")
    args = parser.parse_args(argv)

    crop = load_crop()
    t0 = time.perf_counter()
    regions = crop.regions()
    region_s = time.perf_counter() - t0
    seg = load_segmenter(args.model, **({} if args.threads is None else {"threads": args.threads}))
    selects = {"whole": None, "eval": crop.frames(EVAL_FRAMES), "train": crop.frames(TRAIN_FRAMES),
               "abdomen": crop.frames((ABDOMEN_FRAMES,))}
    out = {"model": str(args.model), "segmenter": seg.name, "weights_meta_trained_steps":
           getattr(seg, "meta", {}).get("trained_steps"), "regions_seconds": round(region_s, 1),
           "split": {"train_frames": TRAIN_FRAMES, "eval_frames": EVAL_FRAMES, "abdomen_frames": ABDOMEN_FRAMES},
           "runs": {}}
    masks = {}
    for run in args.runs.split(","):
        if run == "native":
            vol, spacing = crop.volume, crop.spacing
        elif run == "ccta":
            hu, spacing = resample_ccta(crop.hu, crop.spacing)
            vol = canonical_volume(hu, spacing)
        else:
            raise SystemExit(f"unknown run {run!r}")
        t = time.perf_counter()
        mask = seg.segment(vol)
        seconds = time.perf_counter() - t
        masks[run] = (mask, spacing)
        res = {"shape_zyx": list(mask.shape), "spacing_mm": [round(s, 4) for s in spacing],
               "seconds": round(seconds, 1)}
        for name, sel in selects.items():
            res[name] = false_vessel_report(mask, spacing, regions, select=sel)
        out["runs"][run] = res
        del vol
    out_json = RESULTS / f"segment_plausibility_{args.tag}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(out, indent=2) + "\n")
    _table(out, FALSE_CATEGORIES)
    _figure(crop, regions, masks, out_json.with_suffix(".png"), args.tag)
    print(f"wrote {out_json.relative_to(RESULTS.parent.parent)} and .png")
    return 0


def _table(out: dict, cats: Sequence[str]) -> None:
    head = ["run", "region", "mask ml"] + [f"{c} ml" for c in cats] + ["any false ml", "shell frac"]
    print(" | ".join(head))
    for run, res in out["runs"].items():
        for name in ("whole", "eval", "train", "abdomen"):
            r = res[name]
            vals = [f"{r['false_ml'][c]:.2f}" if r["false_ml"][c] is not None else "-" for c in cats]
            shell = "-" if r["heart_shell_fraction"] is None else f"{r['heart_shell_fraction']:.3f}"
            print(" | ".join([run, name, f"{r['mask_ml']:.2f}", *vals, f"{r['false_any_ml']:.2f}", shell]))


def _figure(crop, regions, masks: dict, path: Path, tag: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    levels = [10, 50, 75, 105, 135]
    rows = list(masks)
    fig, axes = plt.subplots(len(rows), len(levels) + 1, figsize=(3.2 * (len(levels) + 1), 3.4 * len(rows)),
                             squeeze=False)
    for r, run in enumerate(rows):
        mask, spacing = masks[run]
        # mask on the native grid (any voxel of the fine block marked) for display
        fz = [int(round(crop.spacing[a] / spacing[a])) for a in range(3)]
        if any(f > 1 for f in fz):
            from dmic_core.segmentation.plausibility import lookup_indices

            native = np.zeros(crop.hu.shape, bool)
            native[lookup_indices(mask, spacing, regions)] = True
        else:
            native = mask.astype(bool)
        for c, z in enumerate(levels):
            ax = axes[r, c]
            ax.imshow(np.clip(crop.hu[z], -200, 800), cmap="gray")
            if regions.heart_distance is not None:
                ax.contour(regions.heart_distance[z], levels=[0, regions.shell_mm], colors=["yellow", "orange"],
                           linewidths=0.6)
            ax.contour(regions.lung[z], levels=[0.5], colors="deepskyblue", linewidths=0.5)
            ax.contour(regions.bone[z], levels=[0.5], colors="white", linewidths=0.5)
            if regions.great_vessels is not None:
                ax.contour(regions.great_vessels[z], levels=[0.5], colors="cyan", linewidths=0.6)
            ax.imshow(np.ma.masked_where(~native[z], native[z]), cmap=ListedColormap(["red"]), alpha=0.9,
                      vmin=0, vmax=1)
            ax.set_title(f"{run} z={z} ({int(native[z].sum())} vox)", fontsize=8)
            ax.axis("off")
        ax = axes[r, -1]
        aspect = crop.spacing[0] / crop.spacing[2]
        ax.imshow(np.clip(crop.hu.max(axis=1)[::-1], -200, 1000), cmap="gray", aspect=aspect, alpha=0.6)
        proj = native.sum(axis=1)[::-1].astype(np.float32)
        ax.imshow(np.ma.masked_where(proj == 0, proj), cmap="hot", aspect=aspect)
        ax.set_title(f"{run}: coronal projection of the mask", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Segmenter '{tag}' on the real crop: red = mask; yellow/orange = heart surface / 10 mm shell; "
                 "cyan = aorta+PA; blue = lung; white = bone", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
