"""What a phantom is made of: tissue classes, fixed scales and the per-seed :class:`PhantomConfig`.

Every random draw of a phantom's anatomy, contrast, noise and geometry happens here, from the seed,
so a config alone (recorded in ``Volume.meta``) says everything about a volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmic_core.volume import Volume


TISSUE_CLASSES: dict[str, int] = {
    "air": 0, "lung": 1, "fat": 2, "soft_tissue": 3, "myocardium": 4, "blood": 5, "bone": 6,
    "liver": 7, "aorta": 8,
}

#: Slice thickness / spacing of ImageCAS-like volumes (mm).
SLICE_SPACING_MM = 0.5
#: Nominal in-plane matrix the spacing range refers to.
NOMINAL_SIZE = 512
#: Size of the unit heart (mm per model unit) before the per-seed ``heart_scale``.
HEART_BASE_SCALE = 1.25


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class PhantomConfig:
    """Randomised parameters of one phantom, all drawn from its seed (recorded in ``Volume.meta``).

    Distances in mm (LPS, relative to the centre of the field of view), HU values before PSF and
    noise. ``spacing_xy`` is the in-plane spacing for a 512 matrix; other sizes keep the field of
    view and scale the spacing.
    """

    seed: int
    n_slices: int
    size: int
    spacing_xy: float
    spacing_z: float
    # heart pose and size
    heart_center: tuple[float, float, float]
    heart_scale: float
    heart_yaw_deg: float
    heart_tilt_deg: float
    heart_roll_deg: float
    epicardial_fat_mm: float
    aorta_radius_mm: float
    # body
    midline_offset_mm: float
    posterior_gap_mm: float
    vertebra_radius_mm: float
    anterior_gap_mm: float
    chest_wall_mm: float
    subcutaneous_fat_mm: float
    body_half_width_mm: float
    # HU levels
    contrast_hu: float
    right_heart_ratio: float
    svc_hu: float
    myocardium_hu: float
    fat_hu: float
    muscle_hu: float
    lung_hu: float
    liver_hu: float
    trabecular_hu: float
    cortical_hu: float
    # coronary trees
    dominance: str
    n_diagonals: int
    n_marginals: int
    n_acute_marginals: int
    n_septals: int
    n_rv_branches: int
    has_ramus: bool
    has_conus: bool
    coronary_radius_scale: float
    distal_contrast_drop: float
    n_calcifications: int
    n_stenoses: int
    # image formation
    psf_fwhm_mm: float
    noise_std_hu: float
    noise_coarse_fraction: float
    noise_centre_boost: float

    @classmethod
    def from_seed(cls, seed: int, n_slices: int | None = None, size: int = NOMINAL_SIZE) -> "PhantomConfig":
        """Draw every parameter from ``seed`` (``n_slices`` overrides only the slice count)."""
        r = np.random.default_rng([int(seed), 0])
        u = lambda lo, hi: float(r.uniform(lo, hi))  # noqa: E731 - terse draws read best here
        drawn_slices = int(np.clip(round(r.normal(205, 35)), 128, 275))
        dominance = str(r.choice(["right", "left", "co"], p=[0.8, 0.1, 0.1]))
        contrast = u(330, 520)
        heart_scale = u(0.9, 1.15)
        # the scan's field of view is chosen to fit the heart: bigger hearts, coarser pixels
        spacing = float(np.clip(0.30 + 0.6 * (heart_scale - 0.9) + r.normal(0, 0.03), 0.30, 0.45))
        return cls(
            seed=int(seed), n_slices=int(n_slices or drawn_slices), size=int(size),
            spacing_xy=round(spacing, 4) * NOMINAL_SIZE / size, spacing_z=SLICE_SPACING_MM,
            heart_center=(u(-12, 12), u(-24, -6), u(-4, 10)), heart_scale=heart_scale,
            heart_yaw_deg=u(-12, 12), heart_tilt_deg=u(-10, 10), heart_roll_deg=u(-15, 15),
            epicardial_fat_mm=u(1.0, 4.0), aorta_radius_mm=u(12.5, 17.0),
            midline_offset_mm=u(15, 32), posterior_gap_mm=u(4, 16), vertebra_radius_mm=u(15, 19),
            anterior_gap_mm=u(2, 16), chest_wall_mm=u(12, 40), subcutaneous_fat_mm=u(4, 22),
            body_half_width_mm=u(140, 180),
            contrast_hu=contrast, right_heart_ratio=u(0.45, 0.95), svc_hu=u(150, 850),
            myocardium_hu=u(75, 140), fat_hu=u(-115, -80), muscle_hu=u(35, 60), lung_hu=u(-880, -810),
            liver_hu=u(55, 110), trabecular_hu=u(150, 300), cortical_hu=u(850, 1400),
            dominance=dominance, n_diagonals=int(r.integers(1, 5)), n_marginals=int(r.integers(1, 5)),
            n_acute_marginals=int(r.integers(1, 3)), n_septals=int(r.integers(1, 5)),
            n_rv_branches=int(r.integers(0, 3)), has_ramus=bool(r.random() < 0.25),
            has_conus=bool(r.random() < 0.5), coronary_radius_scale=u(1.0, 1.25),
            distal_contrast_drop=u(0.05, 0.22), n_calcifications=int(r.poisson(u(0.0, 3.0))),
            n_stenoses=int(r.integers(0, 4)),
            psf_fwhm_mm=u(0.6, 0.8), noise_std_hu=u(18, 38), noise_coarse_fraction=u(0.3, 0.6),
            noise_centre_boost=u(0.1, 0.35),
        )


@dataclass
class PhantomResult:
    """A rendered phantom: the volume, its coronary label and (optionally) a coarse tissue map."""

    volume: Volume
    label: np.ndarray
    config: PhantomConfig
    tissue: np.ndarray | None = None
    landmarks: dict[str, Any] = field(default_factory=dict)
