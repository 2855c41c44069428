"""Optional real-CT confounders of a phantom, each a named :class:`PhantomOptions` flag (all off by
default: a phantom without options is bit-identical to one rendered before they existed).

What the generator already has, always on: contrast-filled chambers and great vessels (aorta,
pulmonary trunk and branches, pulmonary veins, dense SVC), calcified plaque, ribs, sternum,
vertebrae, contrast-filled vessel *dots* in the lungs, a partial-volume ramp at every edge and a
Gaussian PSF. What the options add:

* ``lung_vessel_trees``: branching pulmonary artery and vein trees in the aerated lung from both
  hila (radius 4.5 -> 0.9 mm, arteries at right-heart, veins at left-heart contrast): the small
  bright tubes a coronary model must not mark.
* ``dense_contrast_streaks``: bright/dark streaks radiating from the undiluted contrast in the
  SVC (amplitude up to ~120 HU, falling with distance), as filtered back-projection makes them.
* ``motion_blur``: cardiac motion: the heart region is blurred along one in-plane direction
  (sigma 0.4-1.4 mm, fading 60 mm from the LV centre). The label keeps the true lumen.
* ``real_noise``: noise texture of the real crop: all noise at full resolution (no half-resolution
  component), which is whiter, like the real scan's, than the default's coarser grain.

Each option draws from its own random stream ``(seed, 10 + k)``, so options are independent and
turning one on changes nothing the others draw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from dmic_core.datasets.phantom.config import PhantomConfig, TISSUE_CLASSES as _T
from dmic_core.datasets.phantom.geometry import Canvas, Grid, capsule
from dmic_core.datasets.phantom.heart import HeartGeometry


@dataclass(frozen=True)
class PhantomOptions:
    """Named real-CT confounders (see the module docstring); all off by default."""

    lung_vessel_trees: bool = False
    dense_contrast_streaks: bool = False
    motion_blur: bool = False
    real_noise: bool = False

    @classmethod
    def all(cls) -> "PhantomOptions":
        return cls(**{f.name: True for f in fields(cls)})

    @classmethod
    def parse(cls, text: str | None) -> "PhantomOptions":
        """``"lung_vessel_trees,motion_blur"`` or ``"all"`` -> options (empty/None: none)."""
        if not text:
            return cls()
        if text.strip() == "all":
            return cls.all()
        names = {f.name for f in fields(cls)}
        chosen = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in chosen if t not in names]
        if bad:
            raise ValueError(f"unknown phantom option(s) {bad}: use {sorted(names)} or 'all'")
        return cls(**{t: True for t in chosen})

    def enabled(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


def paint_lung_trees(cv: Canvas, cfg: PhantomConfig, geo: HeartGeometry) -> None:
    """Pulmonary artery and vein trees grown from both hila into the aerated lung (low-res canvas)."""
    rng = np.random.default_rng([cfg.seed, 10])
    lung = cv.cls == _T["lung"]
    if not lung.any():
        return
    centre = geo.to_lps(geo.lv_in.center)
    art_hu = cfg.contrast_hu * cfg.right_heart_ratio * rng.uniform(0.85, 1.0)
    vein_hu = cfg.contrast_hu * rng.uniform(0.85, 0.98)
    g = cv.grid
    for side in (-1, 1):
        hilum = centre + np.array([side * rng.uniform(50, 65), rng.uniform(5, 20), rng.uniform(5, 25)])
        for hu in (art_hu, vein_hu):
            root = hilum + rng.uniform(-8, 8, 3)
            stack = [(root, np.array([side * 1.0, rng.uniform(-0.3, 0.5), rng.uniform(-0.6, 0.6)]), 4.5, 0)]
            while stack:
                p, d, r, depth = stack.pop()
                d = d / np.linalg.norm(d)
                length = rng.uniform(10, 24)
                q = p + d * length
                r1 = r * rng.uniform(0.75, 0.9)
                shape = capsule(g, p, q, r, r1, 2.0)
                if shape is not None:
                    box, dist = shape
                    cv.paint(shape, hu, _T["blood"], where=lung[box].astype(np.float32))
                if r1 < 0.9 or depth > 8:
                    continue
                for _ in range(2):
                    nd = d + rng.normal(0, 0.55, 3)
                    stack.append((q, nd, r1 * rng.uniform(0.75, 0.95), depth + 1))


def _svc_axis(geo: HeartGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Start point and unit direction of the SVC as :mod:`.heart` paints it."""
    ra_c = geo.to_lps(geo.ra.center)
    svc0 = ra_c + np.array([0, 4, geo.ra.semi[2] * 0.6])
    d = np.array([-3.0, 4.0, 1000.0])
    return svc0, d / np.linalg.norm(d)


def add_streaks(img: np.ndarray, grid: Grid, cfg: PhantomConfig, geo: HeartGeometry) -> None:
    """Streaks radiating from the dense SVC contrast in every frame above its entry into the RA."""
    rng = np.random.default_rng([cfg.seed, 11])
    amp = float(np.clip((cfg.svc_hu - 350.0) / 500.0, 0.0, 1.0)) * rng.uniform(60, 120)
    if amp <= 0:
        return
    svc0, d = _svc_axis(geo)
    n = int(rng.integers(5, 11))
    angles = rng.uniform(0, np.pi, n)
    signs = rng.choice([-1.0, 1.0], n)
    width = rng.uniform(0.8, 1.6, n)  # mm at 10 mm from the source
    _z, y, x = grid.coords()
    zc = grid.origin[0] + grid.spacing[0] * np.arange(grid.shape[0])
    for k, z in enumerate(zc):
        if z < svc0[2]:
            continue
        c = svc0 + d * (z - svc0[2]) / d[2]
        dx, dy = x[0] - c[0], y[0] - c[1]
        r = np.sqrt(dx * dx + dy * dy) + 1e-3
        theta = np.arctan2(dy, dx)
        field = np.zeros(r.shape, np.float32)
        for a, s, w in zip(angles, signs, width):
            dtheta = np.angle(np.exp(2j * (theta - a))) / 2  # lines through the source: period pi
            field += s * np.exp(-0.5 * (dtheta * r / w) ** 2)
        body = img[k] > -500
        img[k] += (amp * field / (1.0 + r / 40.0) * (r > 10.0) * body).astype(np.float32)


def add_motion_blur(img: np.ndarray, grid: Grid, cfg: PhantomConfig, geo: HeartGeometry) -> None:
    """Directional blur of the heart region (cardiac motion), fading with distance from the LV."""
    rng = np.random.default_rng([cfg.seed, 12])
    axis = int(rng.integers(1, 3))
    sigma = rng.uniform(0.4, 1.4) / grid.spacing[axis]
    centre = geo.to_lps(geo.lv_in.center)
    z, y, x = grid.coords()
    for k in range(img.shape[0]):
        w = np.exp(-((x[0] - centre[0]) ** 2 + (y[0] - centre[1]) ** 2 + (z[k, 0, 0] - centre[2]) ** 2) / (2 * 60.0 ** 2))
        if w.max() < 0.05:
            continue
        blurred = ndimage.gaussian_filter1d(img[k], sigma, axis=axis - 1)
        img[k] += (w * (blurred - img[k])).astype(np.float32)


__all__ = ["PhantomOptions", "paint_lung_trees", "add_streaks", "add_motion_blur"]
