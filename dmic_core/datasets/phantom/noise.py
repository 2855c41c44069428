"""Image formation: the scanner's Gaussian PSF and Gaussian-correlated noise, scaled so the
drawn noise standard deviation is what the finished image has.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dmic_core.datasets.phantom.config import PhantomConfig
from dmic_core.datasets.phantom.geometry import Canvas, Grid
from dmic_core.volume import HU_MAX, HU_MIN


def _gauss_kernel(sigma: float, truncate: float = 3.0) -> np.ndarray:
    """The discrete Gaussian scipy uses for ``sigma`` (voxels) and ``truncate``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def _fine_gain(sigmas: tuple[float, ...]) -> float:
    """Std of unit white noise after the separable PSF."""
    return float(np.prod([np.sqrt((_gauss_kernel(s) ** 2).sum()) for s in sigmas]))


def _coarse_gain(sigmas: tuple[float, ...]) -> float:
    """Std of unit white noise on the half-resolution grid after 2x linear upsampling and the PSF."""
    var = 1.0
    for s in sigmas:
        k = np.convolve(np.array([0.25, 0.75, 0.75, 0.25]), _gauss_kernel(s))
        var *= 0.5 * ((k[0::2] ** 2).sum() + (k[1::2] ** 2).sum())
    return float(np.sqrt(var))


def _noise_weight(grid: Grid, cfg: PhantomConfig) -> np.ndarray:
    """In-plane noise multiplier: 1 in the chest centre, lower towards the periphery (photon paths)."""
    _z, y, x = grid.coords()
    cx, cy = cfg.heart_center[0] - 0.5 * cfg.midline_offset_mm, cfg.heart_center[1] + 20
    w = 1.0 + cfg.noise_centre_boost * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 70.0 ** 2))
    return (w / (1.0 + cfg.noise_centre_boost)).astype(np.float32)


def _psf_sigmas(grid: Grid, cfg: PhantomConfig) -> tuple[float, float, float]:
    return tuple(cfg.psf_fwhm_mm / 2.3548 / s for s in grid.spacing)  # type: ignore[return-value]


def add_coarse_noise(cv: Canvas, full: Grid, cfg: PhantomConfig) -> None:
    """The low-frequency part of the noise, added on the half-resolution grid before upsampling."""
    std = cfg.noise_std_hu * np.sqrt(cfg.noise_coarse_fraction) / _coarse_gain(_psf_sigmas(full, cfg))
    noise = np.random.default_rng([cfg.seed, 4]).standard_normal(cv.grid.shape, dtype=np.float32)
    noise *= _noise_weight(cv.grid, cfg) * np.float32(std)
    cv.hu += noise


def form_image(img: np.ndarray, grid: Grid, cfg: PhantomConfig, chunk: int = 32) -> np.ndarray:
    """PSF blur plus the fine part of the noise, slab by slab (halo kept), clipped to int16 HU.

    White noise is drawn per slice from ``(seed, slice)`` so overlapping halos agree and the
    result equals one whole-volume filter.
    """
    psf = _psf_sigmas(grid, cfg)
    std = cfg.noise_std_hu * np.sqrt(1.0 - cfg.noise_coarse_fraction) / _fine_gain(psf)
    weight = _noise_weight(grid, cfg)[0] * np.float32(std)
    n, halo = img.shape[0], 4
    out = np.empty(img.shape, np.int16)
    for z0 in range(0, n, chunk):
        z1 = min(z0 + chunk, n)
        lo, hi = max(z0 - halo, 0), min(z1 + halo, n)
        sub = img[lo:hi].copy()
        for k in range(lo, hi):
            white = np.random.default_rng([cfg.seed, 3, k]).standard_normal(sub.shape[1:], dtype=np.float32)
            sub[k - lo] += white * weight
        ndimage.gaussian_filter(sub, psf, output=sub, truncate=3.0)
        part = sub[z0 - lo: z1 - lo]
        np.clip(part, HU_MIN, HU_MAX, out=part)
        out[z0:z1] = np.rint(part)
    return out
