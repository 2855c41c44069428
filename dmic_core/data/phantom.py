"""Synthetic coronary CT angiography (CCTA) phantoms with coronary-lumen labels, ImageCAS-like.

ImageCAS cannot be downloaded here, so the segmentation model and the RL agents train and test on
these volumes. Each seed draws a :class:`PhantomConfig` (anatomy, contrast, noise, geometry) and
renders a 512 x 512 x N int16 HU volume in canonical LPS frames plus a uint8 label of the coronary
lumen (voxel centres inside the lumen radius, coronary trees only, like ImageCAS).

How it is built (all in mm, LPS, origin at the centre of the field of view):

* Large anatomy (body wall, lungs, ribs, spine, heart chambers, great vessels, liver dome) is
  painted at half resolution as soft-edged ellipsoids, capsules and ellipses, then linearly
  upsampled: their edges get a partial-volume ramp of about one low-resolution voxel.
* The heart lives in its own frame ``(u, v, w)``: ``u`` base->apex, ``v`` right->left ventricle,
  ``w`` towards anterior. The ventricular surface is the union of the LV and RV epicardial
  ellipsoids; the crease where they meet is the interventricular groove, and the plane where the
  atria meet the ventricles is the AV groove. Coronary centrelines are walks on that surface
  (plus smooth wiggle), so they sit in the epicardial fat like real ones.
* Coronaries, soft plaque and calcium are drawn at full resolution only in small boxes around
  centreline chunks (capsule distance fields), then the whole volume gets a Gaussian PSF and
  Gaussian-correlated noise scaled to the drawn target standard deviation.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dmic_core.io.orientation import canonical_volume, from_canonical
from dmic_core.volume import HU_MAX, HU_MIN, Volume

#: Tissue classes of :attr:`PhantomResult.tissue` (for realism checks, not for training).
TISSUE_CLASSES: dict[str, int] = {
    "air": 0, "lung": 1, "fat": 2, "soft_tissue": 3, "myocardium": 4, "blood": 5, "bone": 6,
    "liver": 7, "aorta": 8,
}
_T = TISSUE_CLASSES

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


# --------------------------------------------------------------------------------------------
# Grids and soft shapes
# --------------------------------------------------------------------------------------------

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class _Grid:
    """A voxel grid: ``shape``/``spacing``/``origin`` in (z, y, x); origin = centre of voxel 0."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def coords(self, box: Box | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates ``z (Z,1,1), y (1,Y,1), x (1,1,X)`` of ``box``."""
        box = box or tuple(slice(0, n) for n in self.shape)  # type: ignore[assignment]
        out = []
        for axis, sl in enumerate(box):  # type: ignore[arg-type]
            c = self.origin[axis] + self.spacing[axis] * np.arange(sl.start, sl.stop, dtype=np.float32)
            shape = [1, 1, 1]
            shape[axis] = c.size
            out.append(c.reshape(shape))
        return out[0], out[1], out[2]

    def box(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> Box | None:
        """Index box covering the mm range ``[lo, hi]`` (x, y, z order), or None if outside."""
        slices = []
        for axis, (lo, hi) in enumerate(zip(lo_xyz[::-1], hi_xyz[::-1])):
            i0 = max(int(np.floor((lo - self.origin[axis]) / self.spacing[axis])), 0)
            i1 = min(int(np.ceil((hi - self.origin[axis]) / self.spacing[axis])) + 1, self.shape[axis])
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return tuple(slices)  # type: ignore[return-value]

    @property
    def full(self) -> Box:
        return tuple(slice(0, n) for n in self.shape)  # type: ignore[return-value]


def _ellipsoid(grid: _Grid, center: np.ndarray, axes: np.ndarray, semi: np.ndarray,
               margin: float) -> tuple[Box, np.ndarray] | None:
    """Approximate signed distance (mm) to a rotated ellipsoid inside its bounding box.

    ``axes`` columns are the ellipsoid's axes in (x, y, z). The quadratic form is split into
    2-D and 1-D terms so only three full-box operations are needed.
    """
    semi = np.asarray(semi, dtype=np.float64)
    half = np.sqrt(((axes * semi[None, :]) ** 2).sum(axis=1))
    box = grid.box(center - half - margin, center + half + margin)
    if box is None:
        return None
    z, y, x = grid.coords(box)
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    m = (axes / semi[None, :] ** 2) @ axes.T
    plane = m[0, 0] * dx * dx + m[1, 1] * dy * dy + 2 * m[0, 1] * dx * dy
    slope = 2 * m[0, 2] * dx + 2 * m[1, 2] * dy
    q = plane + dz * slope + m[2, 2] * dz * dz
    s_eff = 3.0 / float(np.sum(1.0 / semi))
    return box, (np.sqrt(q) - 1.0) * np.float32(s_eff)


def _capsule(grid: _Grid, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
             margin: float) -> tuple[Box, np.ndarray] | None:
    """Signed distance (mm) to a tapered capsule from ``a`` to ``b`` inside its bounding box."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    length = float(np.linalg.norm(b - a))
    e = (b - a) / max(length, 1e-6)
    rmax = max(ra, rb) + margin
    box = grid.box(np.minimum(a, b) - rmax, np.maximum(a, b) + rmax)
    if box is None:
        return None
    z, y, x = grid.coords(box)
    dx, dy, dz = x - a[0], y - a[1], z - a[2]
    t = (e[0] * dx + e[1] * dy) + e[2] * dz
    tc = np.clip(t, 0.0, length)
    d2 = (dx * dx + dy * dy) + dz * dz - 2 * tc * t + tc * tc
    radius = ra + (rb - ra) * tc / max(length, 1e-6)
    return box, np.sqrt(np.maximum(d2, 0.0)) - radius


def _ellipse2d(grid: _Grid, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse, shape ``(1, Y, X)``."""
    _z, y, x = grid.coords()
    rho = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return (rho - 1.0) * np.float32(2.0 / (1.0 / ax + 1.0 / ay))


class _Canvas:
    """Low-resolution HU image plus tissue classes, painted back to front with soft edges."""

    def __init__(self, grid: _Grid, background: float) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, background, dtype=np.float32)
        self.cls = np.zeros(grid.shape, dtype=np.uint8)
        self.ramp = float(grid.spacing[1])

    def paint(self, shape: tuple[Box, np.ndarray] | None, value: float | np.ndarray, cls: int,
              where: np.ndarray | None = None) -> None:
        """Blend ``value`` into the region inside ``shape`` (distance < 0) with a one-voxel ramp."""
        if shape is None:
            return
        box, dist = shape
        occ = np.clip(0.5 - dist / self.ramp, 0.0, 1.0)
        if where is not None:
            occ = occ * where
        sub = self.hu[box]
        sub += occ * (np.asarray(value, dtype=np.float32) - sub)
        self.cls[box][np.broadcast_to(occ > 0.5, sub.shape)] = cls

    def extruded(self, grid: _Grid) -> "_Canvas":
        """A 3-D canvas on ``grid`` whose every slice is this single-plane canvas."""
        out = _Canvas.__new__(_Canvas)
        out.grid, out.ramp = grid, self.ramp
        out.hu = np.ascontiguousarray(np.broadcast_to(self.hu, grid.shape))
        out.cls = np.ascontiguousarray(np.broadcast_to(self.cls, grid.shape))
        return out

    def paint_full(self, dist2d: np.ndarray, value: float | np.ndarray, cls: int,
                   where: np.ndarray | None = None) -> None:
        """:meth:`paint` for a 2-D (z-invariant) distance map over the whole grid."""
        self.paint((self.grid.full, dist2d), value, cls, where)


# --------------------------------------------------------------------------------------------
# Heart frame and surface
# --------------------------------------------------------------------------------------------


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def _heart_frame(cfg: PhantomConfig) -> np.ndarray:
    """Columns ``u`` (base->apex), ``v`` (RV->LV), ``w`` (anterior) of the heart in LPS."""
    u0 = np.array([0.62, -0.52, -0.58])
    u = _rotation([0, 0, 1], cfg.heart_yaw_deg) @ _rotation([1, 0, 0], cfg.heart_tilt_deg) @ u0
    u /= np.linalg.norm(u)
    anterior = np.array([0.0, -1.0, 0.0])
    w = anterior - (anterior @ u) * u
    w /= np.linalg.norm(w)
    v = np.cross(w, u)
    if v[0] < 0:
        v = -v
    roll = _rotation(u, cfg.heart_roll_deg)
    return np.column_stack([u, roll @ v, roll @ w])


@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid axis-aligned in the heart frame (centre and semi-axes in mm)."""

    center: np.ndarray
    semi: np.ndarray

    def grown(self, mm: float) -> "_Ellipsoid":
        return _Ellipsoid(self.center, self.semi + mm)


@dataclass
class _HeartGeometry:
    """Chambers and great-vessel anchors of one heart, in its local frame, plus the frame itself."""

    center: np.ndarray
    frame: np.ndarray
    lv_out: _Ellipsoid
    lv_in: _Ellipsoid
    rv_out: _Ellipsoid
    rv_in: _Ellipsoid
    la: _Ellipsoid
    ra: _Ellipsoid
    aortic_root: np.ndarray
    aorta_radius: float
    h_av: float
    h_apex: float

    def to_lps(self, local: np.ndarray) -> np.ndarray:
        """Local ``(..., 3)`` heart coordinates to LPS mm."""
        return self.center + np.asarray(local) @ self.frame.T


def _heart_geometry(cfg: PhantomConfig) -> _HeartGeometry:
    """Chamber ellipsoids scaled by ``heart_scale`` around the drawn heart centre and pose."""
    k = cfg.heart_scale * HEART_BASE_SCALE
    e = lambda c, s: _Ellipsoid(np.array(c, float) * k, np.array(s, float) * k)  # noqa: E731
    lv_out = e((4, 9, 0), (47, 33, 33))
    return _HeartGeometry(
        center=np.array(cfg.heart_center, float), frame=_heart_frame(cfg),
        lv_out=lv_out, lv_in=e((1, 10, 0), (40, 24, 24)),
        rv_out=e((-8, -17, 10), (40, 25, 31)), rv_in=e((-8, -17, 10), (36, 21, 27)),
        la=e((-55, 10, -20), (20, 24, 20)), ra=e((-48, -28, -6), (24, 20, 24)),
        aortic_root=np.array([-41.0, 2.0, 9.0]) * k, aorta_radius=cfg.aorta_radius_mm,
        h_av=-31.0 * k, h_apex=float(lv_out.center[0] + lv_out.semi[0]),
    )


class _HeartSurface:
    """Ventricular epicardium as seen along rays from the long axis: radius ``r(h, phi)``.

    ``phi`` is measured from ``w`` (anterior) towards ``v`` (left ventricle).
    """

    def __init__(self, lv: _Ellipsoid, rv: _Ellipsoid) -> None:
        self.parts = (lv, rv)

    @staticmethod
    def _exit(ell: _Ellipsoid, h: np.ndarray, phi: np.ndarray) -> np.ndarray:
        o = np.stack([h - ell.center[0], -ell.center[1] + 0 * h, -ell.center[2] + 0 * h])
        d = np.stack([0 * h, np.sin(phi), np.cos(phi)])
        s = ell.semi.reshape((3,) + (1,) * (o.ndim - 1))
        a = ((d / s) ** 2).sum(axis=0)
        b = 2 * (o * d / s ** 2).sum(axis=0)
        c = ((o / s) ** 2).sum(axis=0) - 1
        disc = b * b - 4 * a * c
        lam = (-b + np.sqrt(np.maximum(disc, 0))) / (2 * a)
        return np.where(disc > 0, np.maximum(lam, 0.0), 0.0)

    def radius_parts(self, h: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, phi = np.broadcast_arrays(np.asarray(h, float), np.asarray(phi, float))
        return self._exit(self.parts[0], h, phi), self._exit(self.parts[1], h, phi)

    def radius(self, h: np.ndarray | float, phi: np.ndarray | float) -> np.ndarray:
        lv, rv = self.radius_parts(np.atleast_1d(h), np.atleast_1d(phi))
        return np.maximum(lv, rv)

    def groove(self, h: np.ndarray, anterior: bool) -> np.ndarray:
        """Angle of the interventricular groove (LV/RV crease) at each height ``h``."""
        phis = np.deg2rad(np.arange(-90.0, 90.0, 1.0)) if anterior else np.deg2rad(np.arange(90.0, 270.0, 1.0))
        hh, pp = np.meshgrid(np.atleast_1d(h), phis, indexing="ij")
        lv, rv = self.radius_parts(hh, pp)
        score = np.abs(lv - rv) + 1e3 * ((lv <= 0) | (rv <= 0))
        out = phis[np.argmin(score, axis=1)]
        valid = np.min(score, axis=1) < 1e3
        if not valid.any():
            return np.full(np.atleast_1d(h).shape, np.deg2rad(15.0 if anterior else 180.0))
        last = out[valid][-1]
        return np.where(valid, out, last)

    def point(self, h: np.ndarray, phi: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Local 3-D points ``offset`` mm outside the surface at ``(h, phi)``."""
        rho = self.radius(h, phi) + offset
        return np.stack([h, rho * np.sin(phi), rho * np.cos(phi)], axis=-1)

    def push_out(self, pts: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Move local points that lie inside (or too close to) the ventricles onto the surface."""
        h = pts[:, 0]
        phi = np.arctan2(pts[:, 1], pts[:, 2])
        rho = np.hypot(pts[:, 1], pts[:, 2])
        rho = np.maximum(rho, self.radius(h, phi) + offset)
        return np.stack([h, rho * np.sin(phi), rho * np.cos(phi)], axis=-1)


# --------------------------------------------------------------------------------------------
# Coronary trees
# --------------------------------------------------------------------------------------------


@dataclass
class _Vessel:
    """A coronary centreline in heart-local mm with per-point lumen/outer radius and contrast."""

    name: str
    points: np.ndarray
    radius: np.ndarray
    outer: np.ndarray
    hu_scale: np.ndarray
    start_s: float = 0.0

    @property
    def arclength(self) -> np.ndarray:
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(seg)])


def _wiggle(n: int, rng: np.random.Generator, amp: float, step: float = 1.0) -> np.ndarray:
    """Smooth random offsets (sum of three sinusoids), for tortuous-looking centrelines."""
    s = np.arange(n) * step
    out = np.zeros(n)
    for wavelength in (rng.uniform(12, 22), rng.uniform(25, 45), rng.uniform(50, 90)):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 2 * np.pi))
    return amp * out / 1.8


def _taper(n: int, r0: float, r1: float) -> np.ndarray:
    """Lumen radius from ``r0`` to ``r1`` along ``n`` points, narrowing faster distally."""
    t = np.linspace(0.0, 1.0, max(n, 1))
    return r1 + (r0 - r1) * (1 - t) ** 0.6


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Cubic Bezier sampled about every ``step`` mm."""
    approx = np.linalg.norm(p1 - p0) + np.linalg.norm(p2 - p1) + np.linalg.norm(p3 - p2)
    t = np.linspace(0, 1, max(int(approx / step), 2))[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3


class _TreeBuilder:
    """Builds the left and right coronary trees of one heart from a random stream."""

    def __init__(self, cfg: PhantomConfig, geo: _HeartGeometry, rng: np.random.Generator) -> None:
        self.cfg, self.geo, self.rng = cfg, geo, rng
        self.surf = _HeartSurface(geo.lv_out, geo.rv_out)
        self.gap = float(rng.uniform(0.4, 1.0))
        self.vessels: list[_Vessel] = []

    # -- walks on the surface -------------------------------------------------------------
    def _surface_points(self, h: np.ndarray, phi: np.ndarray, radius: np.ndarray) -> np.ndarray:
        return self.surf.point(h, phi, radius + self.gap)

    def groove_walk(self, h0: float, h1: float, anterior: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(h, phi)`` along an interventricular groove from ``h0`` to ``h1`` (1 mm steps)."""
        h = np.arange(h0, h1, 1.0)
        phi = self.surf.groove(h, anterior)
        phi = phi + _wiggle(h.size, self.rng, 2.0) / np.maximum(self.surf.radius(h, phi), 8.0)
        return self._trim_apex(h, phi)

    def av_walk(self, phi0: float, phi1: float) -> tuple[np.ndarray, np.ndarray]:
        """``(h, phi)`` along the AV groove between two angles (1 mm arc steps)."""
        r = float(self.surf.radius(self.geo.h_av, 0.5 * (phi0 + phi1))[0])
        n = max(int(abs(phi1 - phi0) * r), 2)
        phi = np.linspace(phi0, phi1, n)
        tilt = self.rng.uniform(-4, 4) * np.sin(phi + self.rng.uniform(0, 2 * np.pi))
        h = self.geo.h_av + tilt + _wiggle(n, self.rng, 1.5)
        return h, phi

    def free_walk(self, h0: float, phi0: float, heading_deg: float, length: float) -> tuple[np.ndarray, np.ndarray]:
        """``(h, phi)`` of a branch leaving ``(h0, phi0)``; heading 0 = towards apex, +90 = +phi."""
        n = int(length)
        heading = np.deg2rad(heading_deg) + np.deg2rad(_wiggle(n, self.rng, 12.0))
        h, phi = np.empty(n), np.empty(n)
        h[0], phi[0] = h0, phi0
        for i in range(1, n):
            r = float(self.surf.radius(h[i - 1], phi[i - 1])[0])
            if r < 6.0:
                return h[:i], phi[:i]
            h[i] = h[i - 1] + np.cos(heading[i])
            phi[i] = phi[i - 1] + np.sin(heading[i]) / r
        return self._trim_apex(h, phi)

    def _trim_apex(self, h: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = self.surf.radius(h, phi) > 6.0
        n = int(np.argmin(keep)) if not keep.all() else keep.size
        return h[:n], phi[:n]

    # -- vessels --------------------------------------------------------------------------
    def add(self, name: str, pts: np.ndarray, radius: np.ndarray, start_s: float = 0.0) -> _Vessel | None:
        if len(pts) < 3:
            return None
        vessel = _Vessel(name, pts, radius, radius.copy(), np.ones(len(pts)), start_s)
        self.vessels.append(vessel)
        return vessel

    def surface_vessel(self, name: str, h: np.ndarray, phi: np.ndarray, r0: float, r1: float,
                       start_s: float = 0.0) -> _Vessel | None:
        radius = _taper(h.size, r0, r1)
        return self.add(name, self._surface_points(h, phi, radius), radius, start_s)

    def branch(self, parent: _Vessel, name: str, frac: float, heading: float, length: float,
               r_ratio: float) -> _Vessel | None:
        """A side branch leaving ``parent`` at fraction ``frac`` of its length."""
        i = int(np.clip(frac * (len(parent.points) - 1), 1, len(parent.points) - 2))
        p = parent.points[i]
        h0, phi0 = p[0], np.arctan2(p[1], p[2])
        h, phi = self.free_walk(h0, phi0, heading, length)
        r0 = max(parent.radius[i] * r_ratio, 0.75)
        r1 = float(self.rng.uniform(0.6, 0.8))
        return self.surface_vessel(name, h, phi, r0, min(r1, r0), parent.start_s + parent.arclength[i])

    def ostial(self, direction: np.ndarray, target: np.ndarray, target_dir: np.ndarray,
               radius: np.ndarray | float) -> np.ndarray:
        """Path from an aortic-sinus ostium in ``direction`` to a surface point ``target``."""
        d = np.asarray(direction, float) / np.linalg.norm(direction)
        start = self.geo.aortic_root + d * self.geo.aorta_radius * 0.95
        dist = float(np.linalg.norm(target - start))
        pts = _bezier(start, start + d * 0.45 * dist, target - target_dir * 0.35 * dist, target)
        r = np.broadcast_to(np.asarray(radius, float), (len(pts),)) if np.ndim(radius) == 0 else radius
        pushed = self.surf.push_out(pts, np.asarray(r)[: len(pts)] + self.gap)
        pushed[:3] = pts[:3]
        return pushed

    def build(self) -> list[_Vessel]:
        cfg, rng, geo = self.cfg, self.rng, self.geo
        s = cfg.coronary_radius_scale
        r_lm, r_lad, r_lcx, r_rca = (s * rng.uniform(*lim) for lim in ((2.1, 2.6), (1.7, 2.2), (1.5, 2.0), (1.7, 2.2)))
        r_end = lambda: float(rng.uniform(0.7, 0.95))  # noqa: E731
        h_av = geo.h_av
        phi_ant = float(self.surf.groove(np.array([h_av + 5]), True)[0])
        phi_post = float(self.surf.groove(np.array([h_av + 5]), False)[0])

        # left main -> LAD (anterior groove) and LCx (left AV groove)
        h_lad, phi_lad = self.groove_walk(h_av + 5, geo.h_apex - rng.uniform(2, 12), anterior=True)
        lad_r = _taper(h_lad.size, r_lad, r_end())
        lad_pts = self._surface_points(h_lad, phi_lad, lad_r)
        groove_dir = lad_pts[min(4, len(lad_pts) - 1)] - lad_pts[0]
        groove_dir /= np.linalg.norm(groove_dir)
        left_dir = np.array([rng.uniform(-0.1, 0.3), 0.9, rng.uniform(-0.1, 0.4)])
        ostial = self.ostial(left_dir, lad_pts[0], groove_dir, r_lm)
        n_lm = int(np.clip(rng.uniform(6, 15), 3, len(ostial) - 2))
        lm = self.add("LM", ostial[: n_lm + 1], np.full(n_lm + 1, r_lm))
        prox_lad = ostial[n_lm:]
        lad = self.add("LAD", np.concatenate([prox_lad, lad_pts[1:]]),
                       np.concatenate([np.full(len(prox_lad), r_lad), lad_r[1:]]), n_lm)
        bif = ostial[n_lm]
        lcx_end = phi_post + (0.05 if cfg.dominance == "left" else -rng.uniform(0.4, 0.9))
        h_cx, phi_cx = self.av_walk(phi_ant + np.deg2rad(rng.uniform(35, 55)), lcx_end)
        cx_r = _taper(h_cx.size, r_lcx, r_end())
        cx_pts = self._surface_points(h_cx, phi_cx, cx_r)
        d0 = cx_pts[min(4, len(cx_pts) - 1)] - cx_pts[0]
        link = _bezier(bif, bif + (cx_pts[0] - bif) * 0.3, cx_pts[0] - d0 / np.linalg.norm(d0) * 5, cx_pts[0])
        link = self.surf.push_out(link, np.full(len(link), r_lcx + self.gap))
        lcx = self.add("LCx", np.concatenate([link[:-1], cx_pts]),
                       np.concatenate([np.full(len(link) - 1, r_lcx), cx_r]), n_lm)

        # right coronary artery along the right AV groove to the crux
        crux = phi_post - 2 * np.pi
        rca_end = {"right": crux - np.deg2rad(rng.uniform(15, 40)), "co": crux,
                   "left": np.deg2rad(rng.uniform(-150, -115))}[cfg.dominance]
        h_rc, phi_rc = self.av_walk(phi_ant - np.deg2rad(rng.uniform(40, 65)), rca_end)
        rc_r = _taper(h_rc.size, r_rca, r_end())
        rc_pts = self._surface_points(h_rc, phi_rc, rc_r)
        d0 = rc_pts[min(4, len(rc_pts) - 1)] - rc_pts[0]
        right_dir = np.array([rng.uniform(-0.1, 0.2), -rng.uniform(0.2, 0.5), 0.95])
        prox = self.ostial(right_dir, rc_pts[0], d0 / np.linalg.norm(d0), r_rca)
        rca = self.add("RCA", np.concatenate([prox[:-1], rc_pts]),
                       np.concatenate([np.full(len(prox) - 1, r_rca), rc_r]))

        # posterior descending artery from the dominant side
        donor = lcx if cfg.dominance == "left" else rca
        if donor is not None and cfg.dominance in ("right", "co", "left"):
            h_pd, phi_pd = self.groove_walk(h_av + 3, h_av + (geo.h_apex - h_av) * rng.uniform(0.55, 0.85),
                                            anterior=False)
            if h_pd.size > 3:
                r0 = 0.7 * float(donor.radius[-1] if cfg.dominance == "left" else rc_r[min(len(rc_r) - 1,
                                 int(len(rc_r) * 0.85))])
                self.surface_vessel("PDA", h_pd, phi_pd, max(r0, 0.9), r_end(), donor.start_s + donor.arclength[-1])
        self._side_branches(lad, lcx, rca)
        self._ramus_and_conus(lm, rca, phi_ant)
        self._stenoses()
        self._contrast_falloff()
        return self.vessels

    def _side_branches(self, lad: _Vessel | None, lcx: _Vessel | None, rca: _Vessel | None) -> None:
        cfg, rng = self.cfg, self.rng
        if lad is not None:
            for j, frac in enumerate(np.sort(rng.uniform(0.12, 0.6, cfg.n_diagonals))):
                self.branch(lad, f"D{j + 1}", frac, rng.uniform(40, 70), rng.uniform(35, 75), rng.uniform(0.55, 0.75))
        if lcx is not None:
            for j, frac in enumerate(np.sort(rng.uniform(0.3, 0.85, cfg.n_marginals))):
                self.branch(lcx, f"OM{j + 1}", frac, rng.uniform(-20, 20), rng.uniform(40, 80), rng.uniform(0.55, 0.8))
        if rca is not None:
            for j, frac in enumerate(np.sort(rng.uniform(0.3, 0.6, cfg.n_acute_marginals))):
                self.branch(rca, f"AM{j + 1}", frac, rng.uniform(-25, 15), rng.uniform(30, 60), rng.uniform(0.5, 0.7))
            for j, frac in enumerate(np.sort(rng.uniform(0.15, 0.35, cfg.n_rv_branches))):
                self.branch(rca, f"RV{j + 1}", frac, rng.uniform(20, 50), rng.uniform(20, 40), rng.uniform(0.45, 0.6))
            if cfg.dominance == "right":
                self.branch(rca, "PLB", 0.97, rng.uniform(-30, 10), rng.uniform(20, 40), 0.75)
        if lad is not None:
            for j, frac in enumerate(np.sort(rng.uniform(0.1, 0.5, cfg.n_septals))):
                self.septal(lad, f"S{j + 1}", frac)

    def septal(self, lad: _Vessel, name: str, frac: float) -> _Vessel | None:
        """A septal perforator: leaves the LAD and dives into the interventricular septum."""
        i = int(np.clip(frac * (len(lad.points) - 1), 1, len(lad.points) - 2))
        p = lad.points[i]
        n = int(self.rng.uniform(15, 30))
        h = p[0] + np.arange(n) * self.rng.uniform(0.5, 0.85)
        phi = np.full(n, np.arctan2(p[1], p[2])) + np.deg2rad(self.rng.uniform(-15, 15)) * np.linspace(0, 1, n)
        radius = _taper(n, max(0.6 * float(lad.radius[i]), 0.8), 0.6)
        depth = np.linspace(0, self.rng.uniform(10, 18), n)
        pts = self.surf.point(h, phi, radius + self.gap - depth)
        return self.add(name, pts, radius, lad.start_s + lad.arclength[i])

    def _ramus_and_conus(self, lm: _Vessel | None, rca: _Vessel | None, phi_ant: float) -> None:
        rng = self.rng
        if lm is not None and self.cfg.has_ramus:
            p = lm.points[-1]
            h, phi = self.free_walk(p[0], np.arctan2(p[1], p[2]) + 0.1, rng.uniform(20, 45), rng.uniform(35, 60))
            self.surface_vessel("RI", h, phi, 0.7 * lm.radius[-1], 0.6, lm.arclength[-1])
        if rca is not None and self.cfg.has_conus:
            self.branch(rca, "conus", 0.08, rng.uniform(100, 130), rng.uniform(15, 28), 0.45)

    def _stenoses(self) -> None:
        """Local lumen narrowing (with soft plaque filling the outer radius) on major vessels."""
        majors = [v for v in self.vessels if v.name in ("LM", "LAD", "LCx", "RCA") and len(v.points) > 15]
        for _ in range(self.cfg.n_stenoses if majors else 0):
            v = majors[int(self.rng.integers(len(majors)))]
            s = v.arclength
            s0 = self.rng.uniform(0.1, 0.7) * s[-1]
            width = self.rng.uniform(1.5, 4.0)
            severity = self.rng.uniform(0.3, 0.75)
            v.radius = v.radius * (1 - severity * np.exp(-(((s - s0) / width) ** 2)))

    def _contrast_falloff(self) -> None:
        drop = self.cfg.distal_contrast_drop
        for v in self.vessels:
            s = v.start_s + v.arclength
            v.hu_scale = 1.0 - drop * np.clip(s / 160.0, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Low-resolution anatomy
# --------------------------------------------------------------------------------------------


@dataclass
class _Body:
    """2-D body layout in mm (LPS, FOV centre at 0): midline, spine, sternum, rib cage."""

    mid_x: float
    spine_y: float
    vb_r: float
    sternum_y: float
    body_cx: float
    body_cy: float
    body_ax: float
    body_ay: float
    cav_cy: float
    cav_ax: float
    cav_ay: float


def _extent(geo: _HeartGeometry, axis: int) -> tuple[float, float]:
    """Lowest and highest LPS coordinate along ``axis`` of the chambers (outer walls)."""
    lo, hi = [], []
    for e in (geo.lv_out, geo.rv_out, geo.la.grown(2.5), geo.ra.grown(2.5)):
        half = float(np.sqrt(((geo.frame[axis] * e.semi) ** 2).sum()))
        c = geo.to_lps(e.center)[axis]
        lo.append(c - half)
        hi.append(c + half)
    return min(lo), max(hi)


def _body_layout(cfg: PhantomConfig, geo: _HeartGeometry) -> _Body:
    """Place midline, spine and sternum around the heart so nothing intersects it."""
    hx, _hy, _ = cfg.heart_center
    front, back = _extent(geo, 1)
    mid_x = hx - cfg.midline_offset_mm
    spine_y = back + cfg.posterior_gap_mm + cfg.vertebra_radius_mm
    sternum_y = front - cfg.anterior_gap_mm - cfg.epicardial_fat_mm
    front = sternum_y - 12 - cfg.chest_wall_mm
    back = spine_y + cfg.vertebra_radius_mm + 75
    cav_front, cav_back = sternum_y, spine_y + 30
    return _Body(mid_x, spine_y, cfg.vertebra_radius_mm, sternum_y, mid_x, 0.5 * (front + back),
                 cfg.body_half_width_mm, 0.5 * (back - front), 0.5 * (cav_front + cav_back),
                 cfg.body_half_width_mm - cfg.subcutaneous_fat_mm - 18, 0.5 * (cav_back - cav_front))


def _paint_body_wall(cv: _Canvas, cfg: PhantomConfig, b: _Body) -> None:
    """Skin, subcutaneous fat, chest-wall muscle and the thoracic cavity filled with lung."""
    g = cv.grid
    cv.paint_full(_ellipse2d(g, b.body_cx, b.body_cy, b.body_ax, b.body_ay), 25.0, _T["soft_tissue"])
    cv.paint_full(_ellipse2d(g, b.body_cx, b.body_cy, b.body_ax - 1.8, b.body_ay - 1.8), cfg.fat_hu, _T["fat"])
    f = cfg.subcutaneous_fat_mm
    cv.paint_full(_ellipse2d(g, b.body_cx, b.body_cy, b.body_ax - f, b.body_ay - 0.6 * f - 2),
                  cfg.muscle_hu, _T["soft_tissue"])
    # a thin fat plane between pectoral muscle and the rib layer
    cv.paint_full(_ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax + 12, b.cav_ay + 12.5), cfg.fat_hu + 20, _T["fat"])
    cv.paint_full(_ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax + 10, b.cav_ay + 10), cfg.muscle_hu, _T["soft_tissue"])
    cv.paint_full(_ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax, b.cav_ay), cfg.lung_hu, _T["lung"])


def _lung_texture(cv: _Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
    """Dependent-density gradient and contrast-filled vessel dots in the lungs."""
    lung = cv.cls == _T["lung"]
    g = cv.grid
    _z, y, _x = g.coords()
    gradient = 45.0 * np.clip((y - b.sternum_y) / max(b.spine_y - b.sternum_y, 1.0), 0, 1.2)
    fine = ndimage.gaussian_filter(rng.standard_normal(g.shape, dtype=np.float32), 0.9 / np.array(g.spacing) * 0.8)
    coarse = ndimage.gaussian_filter(rng.standard_normal(g.shape, dtype=np.float32), 2.2 / np.array(g.spacing))
    fine /= fine.std() + 1e-6
    coarse /= coarse.std() + 1e-6
    vessel_hu = 0.5 * (1 + cfg.right_heart_ratio) * cfg.contrast_hu * 0.6
    dots = np.clip((fine - 1.8) / 0.5, 0, 1) + np.clip((coarse - 2.2) / 0.4, 0, 1)
    value = cfg.lung_hu + gradient + 25.0 * fine + np.minimum(dots, 1.0) * (vessel_hu - cfg.lung_hu)
    cv.hu[lung] = value[lung]


def _paint_ribs(cv: _Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
    """Oblique rib sections in the cavity wall: bands that descend towards anterior, as ribs do."""
    g = cv.grid
    z, y, x = g.coords()
    dx, dy = x - b.body_cx, y - b.cav_cy
    rho = np.sqrt((dx / b.cav_ax) ** 2 + (dy / b.cav_ay) ** 2)
    mean_r = 0.5 * (b.cav_ax + b.cav_ay)
    depth = (rho - 1.0) * mean_r  # mm outside the cavity
    thick = rng.uniform(8, 12)
    ring = (depth > 0.5) & (depth < thick)
    iy, ix = np.nonzero(ring[0])
    theta = np.arctan2(dx[0, 0, ix], dy[0, iy, 0])  # 0 = posterior midline
    arc = np.abs(theta) * mean_r
    pitch, duty, slope = rng.uniform(22, 30), rng.uniform(0.36, 0.46), rng.uniform(0.25, 0.45)
    q = np.mod((z[:, :, 0] + slope * arc[None, :]) / pitch + rng.uniform(0, 1), 1.0)  # (Z, n)
    inside = q < duty
    band_edge = np.minimum(q, duty - q) * pitch * 0.6
    radial_edge = np.minimum(depth[0][iy, ix] - 0.5, thick - depth[0][iy, ix])[None, :]
    edge = np.minimum(band_edge, radial_edge)
    bone = cfg.trabecular_hu + (cfg.cortical_hu - cfg.trabecular_hu) * np.exp(-np.maximum(edge, 0) / 0.9)
    front = np.abs(np.abs(theta) - np.pi) < np.deg2rad(30)
    value = np.where(front[None, :], 140.0, bone)
    lateral = (np.abs(np.abs(theta) - np.pi) > np.deg2rad(9)) & (np.abs(theta) > np.deg2rad(22))
    occ = np.clip(edge / 0.8 + 0.5, 0, 1) * inside * lateral[None, :]
    sub = cv.hu[:, iy, ix]
    cv.hu[:, iy, ix] = sub + occ * (value - sub)
    cls = cv.cls[:, iy, ix]
    cls[occ > 0.5] = _T["bone"]
    cv.cls[:, iy, ix] = cls


def _paint_bone2d(cv: _Canvas, cfg: PhantomConfig, cx: float, cy: float, ax: float, ay: float,
                  cortex: float) -> None:
    """A z-invariant bone section: cortical rim around trabecular marrow."""
    d = _ellipse2d(cv.grid, cx, cy, ax, ay)
    cv.paint_full(d, cfg.cortical_hu * 0.8, _T["bone"])
    cv.paint_full(d + cortex, cfg.trabecular_hu, _T["bone"])


def _paint_spine(cv: _Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
    """Paraspinal muscles, vertebral body with discs, canal and posterior arch, oesophagus."""
    g = cv.grid
    r = b.vb_r
    for side in (-1, 1):
        cv.paint_full(_ellipse2d(g, b.mid_x + side * 32, b.spine_y + r + 32, 26, 24), cfg.muscle_hu, _T["soft_tissue"])
    canal_y = b.spine_y + r + 9
    cv.paint_full(_ellipse2d(g, b.mid_x, canal_y + 4, 14, 13), cfg.cortical_hu * 0.6, _T["bone"])
    cv.paint_full(_ellipse2d(g, b.mid_x, canal_y + 22, 4, 14), cfg.cortical_hu * 0.6, _T["bone"])
    for side in (-1, 1):
        cv.paint_full(_ellipse2d(g, b.mid_x + side * 24, b.spine_y + r + 4, 13, 5), cfg.cortical_hu * 0.6, _T["bone"])
    cv.paint_full(_ellipse2d(g, b.mid_x, canal_y, 8, 7.5), 15.0, _T["soft_tissue"])
    _paint_bone2d(cv, cfg, b.mid_x, b.spine_y, 1.1 * r, r, 1.5)
    # oesophagus in front of the spine, sometimes with air
    ex, ey = b.mid_x + 6, b.spine_y - r - 9
    cv.paint_full(_ellipse2d(g, ex, ey, 8, 7), cfg.muscle_hu, _T["soft_tissue"])
    if rng.random() < 0.5:
        cv.paint_full(_ellipse2d(g, ex, ey, 2.5, 1.8), -900.0, _T["air"])


def _paint_discs(cv: _Canvas, b: _Body, rng: np.random.Generator) -> None:
    """Intervertebral discs: soft-tissue slabs inside the vertebral body outline, periodic in z."""
    z, _y, _x = cv.grid.coords()
    pitch = rng.uniform(23, 29)
    disc = (np.mod(z / pitch + rng.uniform(0, 1), 1.0) < 5.5 / pitch).astype(np.float32)
    d = _ellipse2d(cv.grid, b.mid_x, b.spine_y, 1.1 * b.vb_r - 0.5, b.vb_r - 0.5)
    cv.paint_full(d, 90.0, _T["soft_tissue"], where=disc)


def _paint_mediastinum(cv: _Canvas, cfg: PhantomConfig, b: _Body) -> None:
    """Mediastinal fat column from the sternum to the spine, around the heart and great vessels."""
    cy = 0.5 * (b.sternum_y + b.spine_y)
    cv.paint_full(_ellipse2d(cv.grid, b.mid_x + 10, cy, 24, 0.5 * (b.spine_y - b.sternum_y) + 4),
                  cfg.fat_hu, _T["fat"])


def _paint_abdomen(cv: _Canvas, cfg: PhantomConfig, b: _Body, heart_bottom: float, rng: np.random.Generator) -> None:
    """Diaphragm domes: liver on the right, stomach/spleen on the left, under the heart."""
    g = cv.grid
    eye = np.eye(3)
    top_r = heart_bottom + rng.uniform(5, 25)
    top_l = heart_bottom + rng.uniform(-30, -5)
    cy = b.spine_y - 55
    for cx, top, hu, cls, semi in ((b.mid_x - 45, top_r, cfg.liver_hu, _T["liver"], (95, 80, 85)),
                                   (b.mid_x + 70, top_l, cfg.muscle_hu, _T["soft_tissue"], (70, 70, 70))):
        c = np.array([cx, cy, top - semi[2]])
        cv.paint(_ellipsoid(g, c, eye, np.array(semi) + 3, 2), cfg.muscle_hu, _T["soft_tissue"])
        cv.paint(_ellipsoid(g, c, eye, np.array(semi, float), 2), hu, cls)
    if rng.random() < 0.5:  # gas in the stomach fundus
        c = np.array([b.mid_x + 70, cy - 10, top_l - 14])
        cv.paint(_ellipsoid(g, c, eye, np.array([25.0, 20.0, 9.0]), 2), -950.0, _T["air"])


def _paint_heart(cv: _Canvas, cfg: PhantomConfig, geo: _HeartGeometry, rng: np.random.Generator) -> dict[str, Any]:
    """Chambers, myocardium, epicardial fat and great vessels; returns LPS landmarks."""
    g, R = cv.grid, geo.frame
    lv_hu = cfg.contrast_hu
    rv_hu = cfg.contrast_hu * cfg.right_heart_ratio
    la_hu = lv_hu * rng.uniform(0.93, 1.0)
    ra_hu = rv_hu * rng.uniform(0.9, 1.1)
    myo = cfg.myocardium_hu

    def ell(e: _Ellipsoid, grow: float = 0.0):
        return _ellipsoid(g, geo.to_lps(e.center), R, e.semi + grow, 2.0)

    fat = cfg.epicardial_fat_mm
    chambers = (geo.lv_out, geo.rv_out, geo.la.grown(2.5), geo.ra.grown(2.5))
    for e in chambers:
        cv.paint(ell(e, fat), cfg.fat_hu, _T["fat"])
    for _ in range(int(rng.integers(1, 4))):  # extra fat pads (apex, RV free wall, AV grooves)
        c = np.array([rng.uniform(-20, 40), rng.uniform(-40, 10), rng.uniform(-20, 30)]) * cfg.heart_scale * HEART_BASE_SCALE
        cv.paint(_ellipsoid(g, geo.to_lps(c), R, rng.uniform(10, 22, 3), 2), cfg.fat_hu, _T["fat"])
    # inferior vena cava (unenhanced blood) rising into the right atrium, which overwrites its cap
    ra_c = geo.to_lps(geo.ra.center)
    half_z = float(np.sqrt(((geo.frame[2] * geo.ra.semi) ** 2).sum()))
    ivc0 = ra_c - np.array([0, 0, 0.6 * half_z])
    bottom = g.origin[0] - 60
    cv.paint(_capsule(g, ivc0, np.array([ra_c[0] + 8, ra_c[1] + 12, bottom]), 11.0, 11.0, 2),
             rng.uniform(60, 160), _T["blood"])
    # atria first so the ventricles' base closes over them, then reopen the mitral inflow
    for e, hu in ((geo.la, la_hu), (geo.ra, ra_hu)):
        cv.paint(ell(e, 2.5), myo, _T["myocardium"])
        cv.paint(ell(e), hu, _T["blood"])
    cv.paint(ell(geo.rv_out), myo, _T["myocardium"])
    cv.paint(ell(geo.rv_in), rv_hu, _T["blood"])
    cv.paint(ell(geo.lv_out), myo, _T["myocardium"])
    cv.paint(ell(geo.lv_in), lv_hu, _T["blood"])
    k = cfg.heart_scale * HEART_BASE_SCALE
    for side in (-1, 1):  # papillary muscles
        c = np.array([14, 22, side * 9]) * k
        cv.paint(_ellipsoid(g, geo.to_lps(c), R, np.array([12, 4, 4.5]) * k, 2), myo, _T["myocardium"])
    mitral = [geo.to_lps(np.array([-30, 10, -8]) * k), geo.to_lps(np.array([-44, 10, -16]) * k)]
    cv.paint(_capsule(g, *mitral, 12 * k, 12 * k, 2), la_hu, _T["blood"])
    return _paint_great_vessels(cv, cfg, geo, rng, {"lv": lv_hu, "rv": rv_hu, "la": la_hu, "ra": ra_hu})


def _paint_great_vessels(cv: _Canvas, cfg: PhantomConfig, geo: _HeartGeometry, rng: np.random.Generator,
                         hu: dict[str, float]) -> dict[str, Any]:
    """Pulmonary trunk, aortic root and ascending aorta, SVC/IVC and pulmonary veins."""
    g, k, myo = cv.grid, cfg.heart_scale * HEART_BASE_SCALE, cfg.myocardium_hu
    top = g.origin[0] + g.spacing[0] * g.shape[0] + 60
    bottom = g.origin[0] - 60
    # right ventricular outflow tract and pulmonary trunk with its bifurcation
    rvot = geo.to_lps(np.array([-18, -14, 20]) * k)
    pa0 = geo.to_lps(np.array([-42, -6, 27]) * k)
    r_pa = rng.uniform(11, 14)
    cv.paint(_capsule(g, rvot, pa0, 12 * k + 3, r_pa + 2.5, 2), myo, _T["myocardium"])
    cv.paint(_capsule(g, rvot, pa0, 12 * k, r_pa, 2), hu["rv"], _T["blood"])
    pa_dir = np.array([0.35, 0.45, 1.0]) + rng.uniform(-0.15, 0.15, 3)
    pa1 = pa0 + pa_dir / np.linalg.norm(pa_dir) * rng.uniform(35, 50)
    cv.paint(_capsule(g, pa0, pa1, r_pa, r_pa, 2), hu["rv"], _T["blood"])
    for d, length in ((np.array([0.55, 0.8, 0.15]), 45.0), (np.array([-0.9, 0.45, 0.0]), 70.0)):
        cv.paint(_capsule(g, pa1, pa1 + d / np.linalg.norm(d) * length, r_pa * 0.8, r_pa * 0.65, 2), hu["rv"], _T["blood"])
    # pulmonary veins into the left atrium
    la_c = geo.to_lps(geo.la.center)
    for sx in (-1, 1):
        for sz in (-1, 1):
            d = np.array([sx * 1.0, 0.35, sz * 0.3])
            end = la_c + d / np.linalg.norm(d) * (geo.la.semi[1] + rng.uniform(25, 40))
            cv.paint(_capsule(g, la_c, end, 8.0, rng.uniform(5, 7.5), 2), hu["la"], _T["blood"])
    # aortic root (sinus bulge), ascending aorta, LV outflow
    ar = geo.to_lps(geo.aortic_root)
    r_ao = cfg.aorta_radius_mm
    ao_dir = np.array([rng.uniform(-0.3, 0.0), rng.uniform(-0.25, 0.05), 1.0])
    ao_top = ar + ao_dir / np.linalg.norm(ao_dir) * (top - ar[2])
    lvot = geo.to_lps(np.array([-22, 7, 5]) * k)
    cv.paint(_capsule(g, lvot, ar, 10 * k + 2, r_ao + 1.5, 2), myo, _T["myocardium"])
    cv.paint(_capsule(g, ar, ao_top, r_ao + 1.5, r_ao + 1.5, 2), 45.0, _T["soft_tissue"])
    cv.paint(_capsule(g, lvot, ar, 10 * k, r_ao, 2), hu["lv"], _T["blood"])
    cv.paint(_capsule(g, ar, ar, r_ao * 1.2, r_ao * 1.2, 2), hu["lv"], _T["aorta"])
    cv.paint(_capsule(g, ar, ao_top, r_ao, r_ao, 2), hu["lv"], _T["aorta"])
    # caval veins: dense undiluted contrast above, unenhanced blood from below
    ra_c = geo.to_lps(geo.ra.center)
    svc0 = ra_c + np.array([0, 4, geo.ra.semi[2] * 0.6])
    cv.paint(_capsule(g, svc0, np.array([svc0[0] - 3, svc0[1] + 4, top]), 9.5, 9.5, 2), cfg.svc_hu, _T["blood"])
    return {"aortic_root_lps": ar.tolist(), "ascending_aorta_top_lps": ao_top.tolist(),
            "aorta_radius_mm": r_ao, "lv_center_lps": geo.to_lps(geo.lv_in.center).tolist()}


def _paint_descending_aorta(cv: _Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> dict[str, Any]:
    r = rng.uniform(10, 13.5)
    cx = b.mid_x + b.vb_r + 0.6 * r + rng.uniform(0, 6)
    cy = b.spine_y - b.vb_r * rng.uniform(0.4, 0.9)
    cv.paint_full(_ellipse2d(cv.grid, cx, cy, r + 1.2, r + 1.2), 45.0, _T["soft_tissue"])
    cv.paint_full(_ellipse2d(cv.grid, cx, cy, r, r), cfg.contrast_hu * rng.uniform(0.95, 1.02), _T["aorta"])
    return {"descending_aorta_xy": [float(cx), float(cy)], "descending_aorta_radius_mm": float(r)}


def _heart_bottom(geo: _HeartGeometry) -> float:
    """Lowest z (mm) of the ventricles, where the diaphragm sits."""
    lows = []
    for e in (geo.lv_out, geo.rv_out):
        half_z = float(np.sqrt(((geo.frame[2] * e.semi) ** 2).sum()))
        lows.append(geo.to_lps(e.center)[2] - half_z)
    return min(lows)


def _render_anatomy(cfg: PhantomConfig, grid: _Grid, geo: _HeartGeometry) -> tuple[_Canvas, dict[str, Any]]:
    """Paint all large anatomy on the low-resolution grid.

    Everything that does not change along z (body wall, mediastinum, spine, descending aorta,
    sternum) is painted once on a single plane and extruded, which is 100x cheaper than 3-D.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    b = _body_layout(cfg, geo)
    plane = _Canvas(_Grid((1,) + grid.shape[1:], grid.spacing, (0.0,) + grid.origin[1:]), background=-1000.0)
    _paint_body_wall(plane, cfg, b)
    _paint_mediastinum(plane, cfg, b)
    landmarks = _paint_descending_aorta(plane, cfg, b, rng)
    _paint_spine(plane, cfg, b, rng)
    _paint_bone2d(plane, cfg, b.mid_x, b.sternum_y - 6.5, rng.uniform(12, 18), rng.uniform(5, 7), 1.4)
    cv = plane.extruded(grid)
    _lung_texture(cv, cfg, b, rng)
    _paint_ribs(cv, cfg, b, rng)
    _paint_discs(cv, b, rng)
    _paint_abdomen(cv, cfg, b, _heart_bottom(geo), rng)
    landmarks.update(_paint_heart(cv, cfg, geo, rng))
    _soft_texture(cv, cfg, rng)
    landmarks.update({"midline_x": b.mid_x, "spine_y": b.spine_y, "sternum_y": b.sternum_y})
    return cv, landmarks


def _soft_texture(cv: _Canvas, cfg: PhantomConfig, rng: np.random.Generator) -> None:
    """Low-frequency inhomogeneity per tissue (contrast mixing, fat strands, liver parenchyma)."""
    sigma = 3.0 / np.array(cv.grid.spacing)
    field = ndimage.gaussian_filter(rng.standard_normal(cv.grid.shape, dtype=np.float32), sigma, truncate=2.5)
    field /= field.std() + 1e-6
    amp = np.zeros(256, np.float32)
    for name, value in (("blood", 0.04 * cfg.contrast_hu), ("aorta", 0.015 * cfg.contrast_hu), ("myocardium", 9.0),
                        ("fat", 9.0), ("liver", 9.0), ("soft_tissue", 5.0)):
        amp[_T[name]] = value
    cv.hu += amp[cv.cls] * field


# --------------------------------------------------------------------------------------------
# Full resolution: coronaries, calcium, PSF, noise
# --------------------------------------------------------------------------------------------


def _up_plane(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Linear 2x upsampling of one plane (low-res pixel j centred at full-res index 2j + 0.5)."""
    for axis in (0, 1):
        a = np.moveaxis(a, axis, 0)
        out = np.empty((2 * a.shape[0],) + a.shape[1:], dtype=np.float32)
        out[0::2] = 0.75 * a
        out[1::2] = 0.75 * a
        out[2::2] += 0.25 * a[:-1]
        out[0] += 0.25 * a[0]
        out[1:-1:2] += 0.25 * a[1:]
        out[-1] += 0.25 * a[-1]
        a = np.moveaxis(out[: shape[axis]], 0, axis)
    return np.ascontiguousarray(a)


def _upsample2_into(a: np.ndarray, out: np.ndarray) -> None:
    """Linear 2x upsampling of a volume into ``out``, one low-res slice at a time (no big temporaries)."""
    n_low, plane_shape = a.shape[0], out.shape[1:]
    planes: dict[int, np.ndarray] = {}

    def plane(j: int) -> np.ndarray:
        j = min(max(j, 0), n_low - 1)
        if j not in planes:
            planes[j] = _up_plane(a[j], plane_shape)
        return planes[j]

    for j in range(n_low):
        for k, neighbour in ((2 * j, j - 1), (2 * j + 1, j + 1)):
            if k < out.shape[0]:
                np.multiply(plane(j), 0.75, out=out[k])
                out[k] += 0.25 * plane(neighbour)
        planes.pop(j - 1, None)


def _nearest_up2(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour 2x upsampling of a label map."""
    out = a.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    return np.ascontiguousarray(out[: shape[0], : shape[1], : shape[2]])


@dataclass
class _VesselSamples:
    """Voxels near the coronaries (flat indices) with their signed distances and lumen HU."""

    index: np.ndarray
    lumen: np.ndarray
    outer: np.ndarray
    hu: np.ndarray


def _vessel_samples(grid: _Grid, vessels: list[tuple[np.ndarray, _Vessel]], contrast: float,
                    reach: float) -> _VesselSamples:
    """Union of tapered capsules along all centrelines, evaluated chunk by chunk in small boxes.

    Only voxels within ``reach`` mm of a vessel wall are kept; overlaps between chunks are
    resolved by keeping the smallest distance (a true union, so joints have no seams).
    """
    parts: list[tuple[np.ndarray, ...]] = []
    for pts, v in vessels:
        for i in range(0, len(pts) - 1, 6):
            j = min(i + 7, len(pts))
            part = _chunk_samples(grid, pts[i:j], v.radius[i:j], v.outer[i:j], v.hu_scale[i:j] * contrast, reach)
            if part is not None:
                parts.append(part)
    if not parts:
        empty = np.zeros(0, np.float32)
        return _VesselSamples(np.zeros(0, np.int64), empty, empty, empty)
    index, lumen, outer, hu = (np.concatenate(c) for c in zip(*parts))
    order = np.lexsort((lumen, index))
    index, lumen, outer, hu = index[order], lumen[order], outer[order], hu[order]
    first = np.concatenate([[True], index[1:] != index[:-1]])
    starts = np.flatnonzero(first)
    return _VesselSamples(index[first], lumen[first], np.minimum.reduceat(outer, starts), hu[first])


def _chunk_samples(grid: _Grid, pts: np.ndarray, r: np.ndarray, outer: np.ndarray, hu: np.ndarray,
                   reach: float) -> tuple[np.ndarray, ...] | None:
    """Distances to one centreline chunk (a few capsules) for voxels within ``reach`` of it."""
    rmax = float(outer.max()) + reach
    box = grid.box(pts.min(0) - rmax, pts.max(0) + rmax)
    if box is None:
        return None
    z, y, x = grid.coords(box)
    best = best_out = best_hu = None
    for k in range(len(pts) - 1):
        a, seg = pts[k], pts[k + 1] - pts[k]
        length2 = float(seg @ seg) + 1e-9
        dx, dy, dz = x - a[0], y - a[1], z - a[2]
        t = np.clip(((seg[0] * dx + seg[1] * dy) + seg[2] * dz) / length2, 0.0, 1.0)
        d = np.sqrt((dx - t * seg[0]) ** 2 + (dy - t * seg[1]) ** 2 + (dz - t * seg[2]) ** 2)
        lum = d - (r[k] + (r[k + 1] - r[k]) * t)
        out = d - (outer[k] + (outer[k + 1] - outer[k]) * t)
        h = hu[k] + (hu[k + 1] - hu[k]) * t
        if best is None:
            best, best_out, best_hu = lum, out, h
            continue
        closer = lum < best
        best = np.where(closer, lum, best)
        best_hu = np.where(closer, h, best_hu)
        best_out = np.minimum(best_out, out)
    keep = best_out < reach
    iz, iy, ix = np.nonzero(keep)
    index = np.ravel_multi_index((iz + box[0].start, iy + box[1].start, ix + box[2].start), grid.shape)
    return index, best[keep], best_out[keep], best_hu[keep]


def _draw_coronaries(img: np.ndarray, label: np.ndarray, grid: _Grid, vs: _VesselSamples,
                     cfg: PhantomConfig, rng: np.random.Generator) -> None:
    """Blend fat sheath, soft plaque and lumen into ``img`` and mark the lumen in ``label``.

    The fat sheath reproduces the epicardial fat the coronaries run in; it never replaces
    myocardium or contrast-filled blood.
    """
    ramp = float(grid.spacing[1])
    flat = img.reshape(-1)
    val = flat[vs.index]
    sheath = np.clip(0.5 - (vs.outer - 2.0) / ramp, 0, 1) * (val < cfg.myocardium_hu - 25)
    val += sheath * (cfg.fat_hu - val)
    plaque = np.clip(0.5 - vs.outer / ramp, 0, 1) * (vs.outer < vs.lumen - 0.05)
    val += plaque * (float(rng.uniform(20, 70)) - val)
    lumen = np.clip(0.5 - vs.lumen / ramp, 0, 1)
    val += lumen * (vs.hu - val)
    flat[vs.index] = val
    label.reshape(-1)[vs.index[vs.lumen <= 0]] = 1


def _draw_calcium(img: np.ndarray, label: np.ndarray, grid: _Grid, vessels: list[tuple[np.ndarray, _Vessel]],
                  cfg: PhantomConfig, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Calcified plaques: small bright ellipsoids on the wall of proximal/mid major vessels."""
    majors = [(p, v) for p, v in vessels if v.name in ("LM", "LAD", "LCx", "RCA", "PDA") and len(p) > 10]
    found = []
    for _ in range(cfg.n_calcifications if majors else 0):
        pts, v = majors[int(rng.integers(len(majors)))]
        i = int(rng.integers(1, max(2, int(0.7 * len(pts)))))
        tangent = pts[min(i + 1, len(pts) - 1)] - pts[i - 1]
        tangent /= np.linalg.norm(tangent) + 1e-9
        normal = np.cross(tangent, rng.standard_normal(3))
        normal /= np.linalg.norm(normal) + 1e-9
        semi = rng.uniform(0.5, 1.3)
        center = pts[i] + normal * (v.outer[i] + 0.2 * semi)
        axes = np.column_stack([tangent, normal, np.cross(tangent, normal)])
        shape = _ellipsoid(grid, center, axes, np.array([semi * rng.uniform(1.2, 2.5), semi, semi]), 1.0)
        if shape is None:
            continue
        box, dist = shape
        occ = np.clip(0.5 - dist / float(grid.spacing[1]), 0, 1)
        hu = rng.uniform(900, 2000)
        img[box] += occ * (hu - img[box])
        label[box][occ > 0.5] = 0
        found.append({"vessel": v.name, "center_lps": center.round(2).tolist(), "hu": round(float(hu))})
    return found


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


def _noise_weight(grid: _Grid, cfg: PhantomConfig) -> np.ndarray:
    """In-plane noise multiplier: 1 in the chest centre, lower towards the periphery (photon paths)."""
    _z, y, x = grid.coords()
    cx, cy = cfg.heart_center[0] - 0.5 * cfg.midline_offset_mm, cfg.heart_center[1] + 20
    w = 1.0 + cfg.noise_centre_boost * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 70.0 ** 2))
    return (w / (1.0 + cfg.noise_centre_boost)).astype(np.float32)


def _psf_sigmas(grid: _Grid, cfg: PhantomConfig) -> tuple[float, float, float]:
    return tuple(cfg.psf_fwhm_mm / 2.3548 / s for s in grid.spacing)  # type: ignore[return-value]


def _add_coarse_noise(cv: _Canvas, full: _Grid, cfg: PhantomConfig) -> None:
    """The low-frequency part of the noise, added on the half-resolution grid before upsampling."""
    std = cfg.noise_std_hu * np.sqrt(cfg.noise_coarse_fraction) / _coarse_gain(_psf_sigmas(full, cfg))
    noise = np.random.default_rng([cfg.seed, 4]).standard_normal(cv.grid.shape, dtype=np.float32)
    noise *= _noise_weight(cv.grid, cfg) * np.float32(std)
    cv.hu += noise


def _form_image(img: np.ndarray, grid: _Grid, cfg: PhantomConfig, chunk: int = 32) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _grids(cfg: PhantomConfig) -> tuple[_Grid, _Grid]:
    """Full-resolution grid centred on the FOV, and its half-resolution twin."""
    shape = (cfg.n_slices, cfg.size, cfg.size)
    spacing = (cfg.spacing_z, cfg.spacing_xy, cfg.spacing_xy)
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape, spacing))
    low_shape = tuple((n + 1) // 2 for n in shape)
    low = _Grid(low_shape, tuple(2 * s for s in spacing), tuple(o + 0.5 * s for o, s in zip(origin, spacing)))
    return _Grid(shape, spacing, origin), low  # type: ignore[arg-type]


def render_phantom(cfg: PhantomConfig, with_tissue: bool = False) -> PhantomResult:
    """Render the volume, coronary label and (optionally) the tissue map of a configuration."""
    t0 = time.perf_counter()
    full, low = _grids(cfg)
    geo = _heart_geometry(cfg)
    canvas, landmarks = _render_anatomy(cfg, low, geo)
    tissue = _nearest_up2(canvas.cls, full.shape) if with_tissue else None
    _add_coarse_noise(canvas, full, cfg)
    img = np.empty(full.shape, np.float32)
    _upsample2_into(canvas.hu, img)
    del canvas
    tree_rng = np.random.default_rng([cfg.seed, 1])
    vessels = [(geo.to_lps(v.points), v) for v in _TreeBuilder(cfg, geo, tree_rng).build()]
    label = np.zeros(full.shape, np.uint8)
    samples = _vessel_samples(full, vessels, cfg.contrast_hu, reach=2.0 + float(full.spacing[1]))
    _draw_coronaries(img, label, full, samples, cfg, tree_rng)
    calcium = _draw_calcium(img, label, full, vessels, cfg, tree_rng)
    hu = _form_image(img, full, cfg)
    del img
    landmarks.update({"calcifications": calcium,
                      "vessels": {v.name: {"length_mm": round(float(v.arclength[-1]), 1),
                                           "radius_mm": [round(float(v.radius.max()), 2), round(float(v.radius.min()), 2)]}
                                  for _p, v in vessels}})
    origin_lps = (full.origin[2], full.origin[1], full.origin[0])
    volume = canonical_volume(hu, (cfg.spacing_z, cfg.spacing_xy, cfg.spacing_xy), origin_lps,
                              source={"kind": "phantom", "generator": "dmic_core.data.phantom", "seed": cfg.seed})
    volume.meta["phantom"] = {"config": asdict(cfg), "landmarks": landmarks,
                              "label_fraction": float(label.mean()), "seconds": round(time.perf_counter() - t0, 2)}
    volume.meta["modality"] = "CT"
    return PhantomResult(volume, label, cfg, tissue, landmarks)


def generate_phantom(seed: int, n_slices: int | None = None, *, size: int = NOMINAL_SIZE) -> tuple[Volume, np.ndarray]:
    """A synthetic CCTA volume (int16 HU, canonical LPS) and its coronary-lumen label (uint8 0/1).

    Deterministic per ``seed``; ``n_slices`` overrides the drawn slice count (the anatomy stays the
    same, centred on the volume), ``size`` the in-plane matrix (the field of view is kept).
    """
    if n_slices is not None and n_slices < 1:
        raise ValueError(f"n_slices must be positive, got {n_slices}")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    result = render_phantom(PhantomConfig.from_seed(seed, n_slices, size))
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
