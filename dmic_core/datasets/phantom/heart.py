"""The heart: its own frame ``(u, v, w)`` (base->apex, right->left ventricle, towards anterior),
the ventricular surface the coronaries run on, and the chambers and great vessels painted at low
resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmic_core.datasets.phantom.config import HEART_BASE_SCALE, PhantomConfig, TISSUE_CLASSES as _T
from dmic_core.datasets.phantom.geometry import Canvas, capsule, ellipsoid


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
class HeartGeometry:
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


def heart_geometry(cfg: PhantomConfig) -> HeartGeometry:
    """Chamber ellipsoids scaled by ``heart_scale`` around the drawn heart centre and pose."""
    k = cfg.heart_scale * HEART_BASE_SCALE
    e = lambda c, s: _Ellipsoid(np.array(c, float) * k, np.array(s, float) * k)  # noqa: E731
    lv_out = e((4, 9, 0), (47, 33, 33))
    return HeartGeometry(
        center=np.array(cfg.heart_center, float), frame=_heart_frame(cfg),
        lv_out=lv_out, lv_in=e((1, 10, 0), (40, 24, 24)),
        rv_out=e((-8, -17, 10), (40, 25, 31)), rv_in=e((-8, -17, 10), (36, 21, 27)),
        la=e((-55, 10, -20), (20, 24, 20)), ra=e((-48, -28, -6), (24, 20, 24)),
        aortic_root=np.array([-41.0, 2.0, 9.0]) * k, aorta_radius=cfg.aorta_radius_mm,
        h_av=-31.0 * k, h_apex=float(lv_out.center[0] + lv_out.semi[0]),
    )


class HeartSurface:
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


def paint_heart(cv: Canvas, cfg: PhantomConfig, geo: HeartGeometry, rng: np.random.Generator) -> dict[str, Any]:
    """Chambers, myocardium, epicardial fat and great vessels; returns LPS landmarks."""
    g, R = cv.grid, geo.frame
    lv_hu = cfg.contrast_hu
    rv_hu = cfg.contrast_hu * cfg.right_heart_ratio
    la_hu = lv_hu * rng.uniform(0.93, 1.0)
    ra_hu = rv_hu * rng.uniform(0.9, 1.1)
    myo = cfg.myocardium_hu

    def ell(e: _Ellipsoid, grow: float = 0.0):
        return ellipsoid(g, geo.to_lps(e.center), R, e.semi + grow, 2.0)

    fat = cfg.epicardial_fat_mm
    chambers = (geo.lv_out, geo.rv_out, geo.la.grown(2.5), geo.ra.grown(2.5))
    for e in chambers:
        cv.paint(ell(e, fat), cfg.fat_hu, _T["fat"])
    for _ in range(int(rng.integers(1, 4))):  # extra fat pads (apex, RV free wall, AV grooves)
        c = np.array([rng.uniform(-20, 40), rng.uniform(-40, 10), rng.uniform(-20, 30)]) * cfg.heart_scale * HEART_BASE_SCALE
        cv.paint(ellipsoid(g, geo.to_lps(c), R, rng.uniform(10, 22, 3), 2), cfg.fat_hu, _T["fat"])
    # inferior vena cava (unenhanced blood) rising into the right atrium, which overwrites its cap
    ra_c = geo.to_lps(geo.ra.center)
    half_z = float(np.sqrt(((geo.frame[2] * geo.ra.semi) ** 2).sum()))
    ivc0 = ra_c - np.array([0, 0, 0.6 * half_z])
    bottom = g.origin[0] - 60
    cv.paint(capsule(g, ivc0, np.array([ra_c[0] + 8, ra_c[1] + 12, bottom]), 11.0, 11.0, 2),
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
        cv.paint(ellipsoid(g, geo.to_lps(c), R, np.array([12, 4, 4.5]) * k, 2), myo, _T["myocardium"])
    mitral = [geo.to_lps(np.array([-30, 10, -8]) * k), geo.to_lps(np.array([-44, 10, -16]) * k)]
    cv.paint(capsule(g, *mitral, 12 * k, 12 * k, 2), la_hu, _T["blood"])
    return _paint_great_vessels(cv, cfg, geo, rng, {"lv": lv_hu, "rv": rv_hu, "la": la_hu, "ra": ra_hu})


def _paint_great_vessels(cv: Canvas, cfg: PhantomConfig, geo: HeartGeometry, rng: np.random.Generator,
                         hu: dict[str, float]) -> dict[str, Any]:
    """Pulmonary trunk, aortic root and ascending aorta, SVC/IVC and pulmonary veins."""
    g, k, myo = cv.grid, cfg.heart_scale * HEART_BASE_SCALE, cfg.myocardium_hu
    top = g.origin[0] + g.spacing[0] * g.shape[0] + 60
    bottom = g.origin[0] - 60
    # right ventricular outflow tract and pulmonary trunk with its bifurcation
    rvot = geo.to_lps(np.array([-18, -14, 20]) * k)
    pa0 = geo.to_lps(np.array([-42, -6, 27]) * k)
    r_pa = rng.uniform(11, 14)
    cv.paint(capsule(g, rvot, pa0, 12 * k + 3, r_pa + 2.5, 2), myo, _T["myocardium"])
    cv.paint(capsule(g, rvot, pa0, 12 * k, r_pa, 2), hu["rv"], _T["blood"])
    pa_dir = np.array([0.35, 0.45, 1.0]) + rng.uniform(-0.15, 0.15, 3)
    pa1 = pa0 + pa_dir / np.linalg.norm(pa_dir) * rng.uniform(35, 50)
    cv.paint(capsule(g, pa0, pa1, r_pa, r_pa, 2), hu["rv"], _T["blood"])
    for d, length in ((np.array([0.55, 0.8, 0.15]), 45.0), (np.array([-0.9, 0.45, 0.0]), 70.0)):
        cv.paint(capsule(g, pa1, pa1 + d / np.linalg.norm(d) * length, r_pa * 0.8, r_pa * 0.65, 2), hu["rv"], _T["blood"])
    # pulmonary veins into the left atrium
    la_c = geo.to_lps(geo.la.center)
    for sx in (-1, 1):
        for sz in (-1, 1):
            d = np.array([sx * 1.0, 0.35, sz * 0.3])
            end = la_c + d / np.linalg.norm(d) * (geo.la.semi[1] + rng.uniform(25, 40))
            cv.paint(capsule(g, la_c, end, 8.0, rng.uniform(5, 7.5), 2), hu["la"], _T["blood"])
    # aortic root (sinus bulge), ascending aorta, LV outflow
    ar = geo.to_lps(geo.aortic_root)
    r_ao = cfg.aorta_radius_mm
    ao_dir = np.array([rng.uniform(-0.3, 0.0), rng.uniform(-0.25, 0.05), 1.0])
    ao_top = ar + ao_dir / np.linalg.norm(ao_dir) * (top - ar[2])
    lvot = geo.to_lps(np.array([-22, 7, 5]) * k)
    cv.paint(capsule(g, lvot, ar, 10 * k + 2, r_ao + 1.5, 2), myo, _T["myocardium"])
    cv.paint(capsule(g, ar, ao_top, r_ao + 1.5, r_ao + 1.5, 2), 45.0, _T["soft_tissue"])
    cv.paint(capsule(g, lvot, ar, 10 * k, r_ao, 2), hu["lv"], _T["blood"])
    cv.paint(capsule(g, ar, ar, r_ao * 1.2, r_ao * 1.2, 2), hu["lv"], _T["aorta"])
    cv.paint(capsule(g, ar, ao_top, r_ao, r_ao, 2), hu["lv"], _T["aorta"])
    # caval veins: dense undiluted contrast above, unenhanced blood from below
    ra_c = geo.to_lps(geo.ra.center)
    svc0 = ra_c + np.array([0, 4, geo.ra.semi[2] * 0.6])
    cv.paint(capsule(g, svc0, np.array([svc0[0] - 3, svc0[1] + 4, top]), 9.5, 9.5, 2), cfg.svc_hu, _T["blood"])
    return {"aortic_root_lps": ar.tolist(), "ascending_aorta_top_lps": ao_top.tolist(),
            "aorta_radius_mm": r_ao, "lv_center_lps": geo.to_lps(geo.lv_in.center).tolist()}


def heart_bottom_z(geo: HeartGeometry) -> float:
    """Lowest z (mm) of the ventricles, where the diaphragm sits."""
    lows = []
    for e in (geo.lv_out, geo.rv_out):
        half_z = float(np.sqrt(((geo.frame[2] * e.semi) ** 2).sum()))
        lows.append(geo.to_lps(e.center)[2] - half_z)
    return min(lows)
