"""The public entry points: render a config, generate a phantom from a seed, write an ImageCAS pair."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from dmic_core.datasets.phantom.chest import render_anatomy
from dmic_core.datasets.phantom.config import NOMINAL_SIZE, PhantomConfig, PhantomResult
from dmic_core.datasets.phantom.confounders import PhantomOptions, add_motion_blur, add_streaks, paint_lung_trees
from dmic_core.datasets.phantom.coronary import TreeBuilder, draw_calcium, draw_coronaries, vessel_samples
from dmic_core.datasets.phantom.geometry import Grid, nearest_up2, upsample2_into
from dmic_core.datasets.phantom.heart import heart_geometry
from dmic_core.datasets.phantom.noise import add_coarse_noise, form_image
from dmic_core.io.orientation import canonical_volume, from_canonical
from dmic_core.volume import Volume


def _grids(cfg: PhantomConfig) -> tuple[Grid, Grid]:
    """Full-resolution grid centred on the FOV, and its half-resolution twin."""
    shape = (cfg.n_slices, cfg.size, cfg.size)
    spacing = (cfg.spacing_z, cfg.spacing_xy, cfg.spacing_xy)
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape, spacing))
    low_shape = tuple((n + 1) // 2 for n in shape)
    low = Grid(low_shape, tuple(2 * s for s in spacing), tuple(o + 0.5 * s for o, s in zip(origin, spacing)))
    return Grid(shape, spacing, origin), low  # type: ignore[arg-type]


def render_phantom(cfg: PhantomConfig, with_tissue: bool = False,
                   options: PhantomOptions | None = None) -> PhantomResult:
    """Render the volume, coronary label and (optionally) the tissue map of a configuration.

    ``options`` turns on named real-CT confounders (:class:`PhantomOptions`); without them the
    output is the same, bit for bit, as before the options existed.
    """
    t0 = time.perf_counter()
    options = options or PhantomOptions()
    full, low = _grids(cfg)
    geo = heart_geometry(cfg)
    canvas, landmarks = render_anatomy(cfg, low, geo)
    if options.lung_vessel_trees:
        paint_lung_trees(canvas, cfg, geo)
    tissue = nearest_up2(canvas.cls, full.shape) if with_tissue else None
    if options.real_noise:
        cfg = replace(cfg, noise_coarse_fraction=0.0)
    add_coarse_noise(canvas, full, cfg)
    img = np.empty(full.shape, np.float32)
    upsample2_into(canvas.hu, img)
    del canvas
    tree_rng = np.random.default_rng([cfg.seed, 1])
    vessels = [(geo.to_lps(v.points), v) for v in TreeBuilder(cfg, geo, tree_rng).build()]
    label = np.zeros(full.shape, np.uint8)
    samples = vessel_samples(full, vessels, cfg.contrast_hu, reach=2.0 + float(full.spacing[1]))
    draw_coronaries(img, label, full, samples, cfg, tree_rng)
    calcium = draw_calcium(img, label, full, vessels, cfg, tree_rng)
    if options.motion_blur:
        add_motion_blur(img, full, cfg, geo)
    if options.dense_contrast_streaks:
        add_streaks(img, full, cfg, geo)
    hu = form_image(img, full, cfg)
    del img
    landmarks.update({"calcifications": calcium,
                      "vessels": {v.name: {"length_mm": round(float(v.arclength[-1]), 1),
                                           "radius_mm": [round(float(v.radius.max()), 2), round(float(v.radius.min()), 2)]}
                                  for _p, v in vessels}})
    origin_lps = (full.origin[2], full.origin[1], full.origin[0])
    volume = canonical_volume(hu, (cfg.spacing_z, cfg.spacing_xy, cfg.spacing_xy), origin_lps,
                              source={"kind": "phantom", "generator": "dmic_core.datasets.phantom", "seed": cfg.seed})
    volume.meta["phantom"] = {"config": asdict(cfg), "landmarks": landmarks,
                              "label_fraction": float(label.mean()), "seconds": round(time.perf_counter() - t0, 2)}
    volume.meta["modality"] = "CT"
    if options.enabled():
        volume.meta["phantom"]["options"] = options.enabled()
    return PhantomResult(volume, label, cfg, tissue, landmarks)


def generate_phantom(seed: int, n_slices: int | None = None, *, size: int = NOMINAL_SIZE,
                     options: PhantomOptions | None = None) -> tuple[Volume, np.ndarray]:
    """A synthetic CCTA volume (int16 HU, canonical LPS) and its coronary-lumen label (uint8 0/1).

    Deterministic per ``seed``; ``n_slices`` overrides the drawn slice count (the anatomy stays the
    same, centred on the volume), ``size`` the in-plane matrix (the field of view is kept),
    ``options`` the real-CT confounders to add (:class:`PhantomOptions`, none by default).
    """
    if n_slices is not None and n_slices < 1:
        raise ValueError(f"n_slices must be positive, got {n_slices}")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    result = render_phantom(PhantomConfig.from_seed(seed, n_slices, size), options=options)
    return result.volume, result.label


def write_imagecas_pair(volume: Volume, label: np.ndarray, out_dir: str | Path, case_id: str) -> tuple[Path, Path]:
    """Write ``{case_id}.img.nii.gz`` (int16) and ``{case_id}.label.nii.gz`` (uint8), ImageCAS layout.

    Each file is written to a temporary name in ``out_dir`` and renamed, so readers never see a
    half-written volume.
    """
    import nibabel as nib

    if label.shape != volume.hu.shape:
        raise ValueError(f"label shape {label.shape} does not match volume {volume.hu.shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{case_id}.img.nii.gz", out / f"{case_id}.label.nii.gz")
    arrays = (from_canonical(volume.hu, volume).astype(np.int16),
              from_canonical(label.astype(np.uint8), volume).astype(np.uint8))
    for path, data in zip(paths, arrays):
        image = nib.Nifti1Image(data, volume.affine.astype(np.float64))
        image.header.set_data_dtype(data.dtype)
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(volume.affine, code=1)
        image.set_sform(volume.affine, code=1)
        fd, tmp = tempfile.mkstemp(prefix=f".{case_id}.", suffix=".nii.gz", dir=out)
        os.close(fd)
        try:
            nib.save(image, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return paths
