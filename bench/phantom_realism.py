"""How close are the synthetic CCTA phantoms to real contrast CT? HU statistics, noise, a figure.

Compares phantoms (``dmic_core.datasets.phantom``) with the real arterial-phase CTA crop in
``../shared/data/cta-aorta-crop`` (1.5 mm, TotalSegmentator aorta masks on the same grid):

* HU percentiles of the whole volume and of tissue classes. The real crop has no masks for
  myocardium, fat or lung, so both datasets are classed the same way: by the HU of a 3 mm
  smoothed copy (lung < -600, fat -200..-30, soft tissue 0..180 excluding contrast), and blood by
  the aorta mask (real: true lumen; phantom: its aorta class), eroded 2 voxels.
* Noise: std of the residual after subtracting a 3x3x3 local mean (scaled by sqrt(27/26)) in
  the eroded aorta lumen, at native resolution and, for the phantom, after block-averaging to
  about the real crop's 1.5 mm voxels (noise depends strongly on voxel size).
* A figure: mid slices side by side at a CCTA window (W 800 / L 200) plus HU histograms.

Usage::

    python bench/phantom_realism.py [--seeds 0 1 2] [--slices N] [--real DIR] [--figure PNG]

Prints a table, writes ``bench/results/phantom_realism.json`` and ``docs/figures/phantom_vs_real.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dmic_core.datasets.phantom import TISSUE_CLASSES, PhantomConfig, render_phantom  # noqa: E402
from dmic_core.defaults import shared_data_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_REAL = shared_data_dir() / "cta-aorta-crop"
DEFAULT_FIGURE = ROOT / "docs" / "figures" / "phantom_vs_real.png"
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
WINDOW = (-200, 600)


def load_real(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Real CTA (canonical z, y, x) and its aorta true-lumen mask, via the project's reader."""
    import nibabel as nib

    from dmic_core.io.orientation import to_canonical

    img = nib.load(folder / "ct.nii.gz")
    hu, _t, spacing = to_canonical(np.asarray(img.dataobj), img.affine)
    mask_img = nib.load(folder / "aorta_true_lumen.nii.gz")
    mask, _t, _s = to_canonical(np.asarray(mask_img.dataobj), mask_img.affine)
    return hu.astype(np.float32), mask > 0, spacing


def hu_classes(hu: np.ndarray, spacing: Sequence[float]) -> dict[str, np.ndarray]:
    """Tissue classes from the HU of a 3 mm smoothed copy (same rule for real and phantom)."""
    smooth = ndimage.gaussian_filter(hu, [1.5 / s for s in spacing])
    return {
        "lung": smooth < -600,
        "fat": (smooth > -200) & (smooth < -30),
        "soft_tissue": (smooth > 0) & (smooth < 180),
    }


def residual_noise(hu: np.ndarray, mask: np.ndarray) -> float:
    """Std of (HU - 3x3x3 local mean) inside ``mask`` eroded by 2 voxels."""
    inner = ndimage.binary_erosion(mask, iterations=2)
    if inner.sum() < 50:
        return float("nan")
    local = ndimage.uniform_filter(hu, 3)
    return float((hu - local)[inner].std() * np.sqrt(27 / 26))


def roi_noise(hu: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Std inside ``mask`` (eroded 2 voxels) after removing a 3 mm smooth trend: plain ROI noise."""
    inner = ndimage.binary_erosion(mask, iterations=2)
    if inner.sum() < 50:
        return float("nan")
    weight = ndimage.gaussian_filter(mask.astype(np.float32), [3.0 / s for s in spacing])
    trend = ndimage.gaussian_filter(np.where(mask, hu, 0).astype(np.float32), [3.0 / s for s in spacing])
    return float((hu - trend / np.maximum(weight, 1e-3))[inner].std())


def block_average(a: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over non-overlapping blocks (crops the remainder)."""
    fz, fy, fx = factors
    z, y, x = (a.shape[0] // fz) * fz, (a.shape[1] // fy) * fy, (a.shape[2] // fx) * fx
    return a[:z, :y, :x].reshape(z // fz, fz, y // fy, fy, x // fx, fx).mean(axis=(1, 3, 5))


def describe(hu: np.ndarray, aorta: np.ndarray, spacing: Sequence[float]) -> dict:
    """Percentiles overall and per class, and aorta noise, of one volume."""
    out = {"overall": np.percentile(hu, PERCENTILES).round(1).tolist()}
    classes = hu_classes(hu, spacing)
    classes["aorta_lumen"] = ndimage.binary_erosion(aorta, iterations=2)
    for name, mask in classes.items():
        out[name] = np.percentile(hu[mask], PERCENTILES).round(1).tolist() if mask.any() else None
    out["noise_aorta_std"] = round(residual_noise(hu, aorta), 1)
    out["noise_aorta_roi_std"] = round(roi_noise(hu, aorta, spacing), 1)
    return out


def phantom_stats(seed: int, slices: int | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Statistics of one phantom at native resolution and block-averaged to ~1.5 mm."""
    t0 = time.perf_counter()
    result = render_phantom(PhantomConfig.from_seed(seed, slices), with_tissue=True)
    seconds = time.perf_counter() - t0
    vol = result.volume
    hu = vol.hu.astype(np.float32)
    aorta = result.tissue == TISSUE_CLASSES["aorta"]
    stats = describe(hu, aorta, vol.spacing)
    truth = {}
    for name in ("lung", "fat", "myocardium", "blood", "aorta", "liver", "bone"):
        m = result.tissue == TISSUE_CLASSES[name]
        truth[name] = np.percentile(hu[m], (5, 50, 95)).round(1).tolist() if m.any() else None
    factors = (3, round(1.5 / vol.spacing[1]), round(1.5 / vol.spacing[2]))
    coarse_spacing = tuple(f * s for f, s in zip(factors, vol.spacing))
    coarse_aorta = block_average(aorta.astype(np.float32), factors) > 0.99
    stats.update({
        "seed": seed, "shape_zyx": list(vol.shape), "spacing_zyx": [round(s, 4) for s in vol.spacing],
        "seconds": round(seconds, 2), "label_fraction": round(float(result.label.mean()), 5),
        "noise_target_std": round(result.config.noise_std_hu, 1),
        "ground_truth_classes_p5_p50_p95": truth,
        "noise_aorta_std_at_1p5mm": round(residual_noise(block_average(hu, factors), coarse_aorta), 1),
        "noise_aorta_roi_std_at_1p5mm": round(roi_noise(block_average(hu, factors), coarse_aorta, coarse_spacing), 1),
        "coarse_spacing_zyx": [round(s, 2) for s in coarse_spacing],
    })
    mid = int(np.argmax(result.label.reshape(vol.shape[0], -1).sum(axis=1)))
    return stats, hu[mid], hu.ravel()[:: max(1, hu.size // 2_000_000)]


def table(rows: list[tuple[str, dict]]) -> str:
    """Median and 5-95 % range per class, and noise, as a plain-text table."""
    names = ("overall", "lung", "fat", "soft_tissue", "aorta_lumen")
    head = f"{'volume':<18}" + "".join(f"{n + ' p50 [p5,p95]':>26}" for n in names) + f"{'resid':>7}{'roi':>6}"
    lines = [head]
    for label, s in rows:
        cells = []
        for n in names:
            p = s.get(n)
            cells.append(f"{'-':>26}" if p is None else f"{p[3]:>10.0f} [{p[1]:>5.0f},{p[5]:>5.0f}]".rjust(26))
        lines.append(f"{label:<18}" + "".join(cells) + f"{s['noise_aorta_std']:>7.1f}{s['noise_aorta_roi_std']:>6.1f}")
    return "\n".join(lines)


def figure(real_hu: np.ndarray, real_slices: list[int], phantom_slices: list[tuple[int, np.ndarray]],
           real_sample: np.ndarray, phantom_samples: list[tuple[int, np.ndarray]], path: Path) -> None:
    """Mid slices (real vs phantoms) at a CCTA window and HU histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(real_slices), len(phantom_slices))
    fig, axes = plt.subplots(2, n + 1, figsize=(4.2 * (n + 1), 8.6))
    for ax in axes.ravel():
        ax.axis("off")
    for i, z in enumerate(real_slices):
        axes[0, i].imshow(real_hu[z], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
        axes[0, i].set_title(f"real CTA crop, slice {z} (1.5 mm)")
    for i, (seed, sl) in enumerate(phantom_slices):
        axes[1, i].imshow(sl, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
        axes[1, i].set_title(f"phantom seed {seed} (0.3-0.45 mm)")
    bins = np.linspace(-1024, 1200, 112)
    for row, samples in ((0, [("real", real_sample)]), (1, [(f"seed {s}", v) for s, v in phantom_samples])):
        ax = axes[row, n]
        ax.axis("on")
        if row == 1:
            ax.hist(real_sample, bins=bins, density=True, histtype="step", color="k", lw=1.5, label="real")
        for label, values in samples:
            ax.hist(values, bins=bins, density=True, histtype="step", lw=1.2, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("HU")
        ax.set_title("HU histogram (density, log)")
        ax.legend(fontsize=8)
    fig.suptitle(f"DMIC phantoms vs real arterial-phase CTA, window [{WINDOW[0]}, {WINDOW[1]}] HU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--slices", type=int, default=None, help="phantom slice count (default: drawn)")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL)
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE)
    parser.add_argument("--json", type=Path, default=RESULTS / "phantom_realism.json")
    args = parser.parse_args(argv)

    real_hu, real_aorta, real_spacing = load_real(args.real)
    real = describe(real_hu, real_aorta, real_spacing)
    real.update({"shape_zyx": list(real_hu.shape), "spacing_zyx": list(real_spacing)})
    rows, slices, samples = [("real CTA crop", real)], [], []
    for seed in args.seeds:
        stats, mid, sample = phantom_stats(seed, args.slices)
        rows.append((f"phantom {seed}", stats))
        slices.append((seed, mid))
        samples.append((seed, sample))
    print(table(rows))
    for label, s in rows[1:]:
        print(f"{label}: noise target {s['noise_target_std']} HU, measured residual/ROI "
              f"{s['noise_aorta_std']}/{s['noise_aorta_roi_std']} HU at {s['spacing_zyx']} mm, "
              f"{s['noise_aorta_std_at_1p5mm']}/{s['noise_aorta_roi_std_at_1p5mm']} HU block-averaged to "
              f"{s['coarse_spacing_zyx']} mm; label fraction {s['label_fraction']}; {s['seconds']} s")
    figure(real_hu, [60, 80, 100][: len(slices)], slices, real_hu.ravel(), samples, args.figure)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"real": real, "phantoms": [s for _l, s in rows[1:]],
                                     "percentiles": PERCENTILES, "figure": str(args.figure.relative_to(ROOT))
                                     if args.figure.is_relative_to(ROOT) else str(args.figure)}, indent=2) + "\n")
    print(f"wrote {args.json} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
