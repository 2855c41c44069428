"""The chest around the heart at half resolution: body wall, lungs, ribs, spine, mediastinum,
abdomen and descending aorta, composed with the heart into one anatomy canvas
(:func:`render_anatomy`), plus low-frequency tissue texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dmic_core.datasets.phantom.config import PhantomConfig, TISSUE_CLASSES as _T
from dmic_core.datasets.phantom.geometry import Canvas, Grid, ellipse2d, ellipsoid
from dmic_core.datasets.phantom.heart import HeartGeometry, heart_bottom_z, paint_heart


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


def _extent(geo: HeartGeometry, axis: int) -> tuple[float, float]:
    """Lowest and highest LPS coordinate along ``axis`` of the chambers (outer walls)."""
    lo, hi = [], []
    for e in (geo.lv_out, geo.rv_out, geo.la.grown(2.5), geo.ra.grown(2.5)):
        half = float(np.sqrt(((geo.frame[axis] * e.semi) ** 2).sum()))
        c = geo.to_lps(e.center)[axis]
        lo.append(c - half)
        hi.append(c + half)
    return min(lo), max(hi)


def _body_layout(cfg: PhantomConfig, geo: HeartGeometry) -> _Body:
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


def _paint_body_wall(cv: Canvas, cfg: PhantomConfig, b: _Body) -> None:
    """Skin, subcutaneous fat, chest-wall muscle and the thoracic cavity filled with lung."""
    g = cv.grid
    cv.paint_full(ellipse2d(g, b.body_cx, b.body_cy, b.body_ax, b.body_ay), 25.0, _T["soft_tissue"])
    cv.paint_full(ellipse2d(g, b.body_cx, b.body_cy, b.body_ax - 1.8, b.body_ay - 1.8), cfg.fat_hu, _T["fat"])
    f = cfg.subcutaneous_fat_mm
    cv.paint_full(ellipse2d(g, b.body_cx, b.body_cy, b.body_ax - f, b.body_ay - 0.6 * f - 2),
                  cfg.muscle_hu, _T["soft_tissue"])
    # a thin fat plane between pectoral muscle and the rib layer
    cv.paint_full(ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax + 12, b.cav_ay + 12.5), cfg.fat_hu + 20, _T["fat"])
    cv.paint_full(ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax + 10, b.cav_ay + 10), cfg.muscle_hu, _T["soft_tissue"])
    cv.paint_full(ellipse2d(g, b.body_cx, b.cav_cy, b.cav_ax, b.cav_ay), cfg.lung_hu, _T["lung"])


def _lung_texture(cv: Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
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


def _paint_ribs(cv: Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
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


def _paint_bone2d(cv: Canvas, cfg: PhantomConfig, cx: float, cy: float, ax: float, ay: float,
                  cortex: float) -> None:
    """A z-invariant bone section: cortical rim around trabecular marrow."""
    d = ellipse2d(cv.grid, cx, cy, ax, ay)
    cv.paint_full(d, cfg.cortical_hu * 0.8, _T["bone"])
    cv.paint_full(d + cortex, cfg.trabecular_hu, _T["bone"])


def _paint_spine(cv: Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> None:
    """Paraspinal muscles, vertebral body with discs, canal and posterior arch, oesophagus."""
    g = cv.grid
    r = b.vb_r
    for side in (-1, 1):
        cv.paint_full(ellipse2d(g, b.mid_x + side * 32, b.spine_y + r + 32, 26, 24), cfg.muscle_hu, _T["soft_tissue"])
    canal_y = b.spine_y + r + 9
    cv.paint_full(ellipse2d(g, b.mid_x, canal_y + 4, 14, 13), cfg.cortical_hu * 0.6, _T["bone"])
    cv.paint_full(ellipse2d(g, b.mid_x, canal_y + 22, 4, 14), cfg.cortical_hu * 0.6, _T["bone"])
    for side in (-1, 1):
        cv.paint_full(ellipse2d(g, b.mid_x + side * 24, b.spine_y + r + 4, 13, 5), cfg.cortical_hu * 0.6, _T["bone"])
    cv.paint_full(ellipse2d(g, b.mid_x, canal_y, 8, 7.5), 15.0, _T["soft_tissue"])
    _paint_bone2d(cv, cfg, b.mid_x, b.spine_y, 1.1 * r, r, 1.5)
    # oesophagus in front of the spine, sometimes with air
    ex, ey = b.mid_x + 6, b.spine_y - r - 9
    cv.paint_full(ellipse2d(g, ex, ey, 8, 7), cfg.muscle_hu, _T["soft_tissue"])
    if rng.random() < 0.5:
        cv.paint_full(ellipse2d(g, ex, ey, 2.5, 1.8), -900.0, _T["air"])


def _paint_discs(cv: Canvas, b: _Body, rng: np.random.Generator) -> None:
    """Intervertebral discs: soft-tissue slabs inside the vertebral body outline, periodic in z."""
    z, _y, _x = cv.grid.coords()
    pitch = rng.uniform(23, 29)
    disc = (np.mod(z / pitch + rng.uniform(0, 1), 1.0) < 5.5 / pitch).astype(np.float32)
    d = ellipse2d(cv.grid, b.mid_x, b.spine_y, 1.1 * b.vb_r - 0.5, b.vb_r - 0.5)
    cv.paint_full(d, 90.0, _T["soft_tissue"], where=disc)


def _paint_mediastinum(cv: Canvas, cfg: PhantomConfig, b: _Body) -> None:
    """Mediastinal fat column from the sternum to the spine, around the heart and great vessels."""
    cy = 0.5 * (b.sternum_y + b.spine_y)
    cv.paint_full(ellipse2d(cv.grid, b.mid_x + 10, cy, 24, 0.5 * (b.spine_y - b.sternum_y) + 4),
                  cfg.fat_hu, _T["fat"])


def _paint_abdomen(cv: Canvas, cfg: PhantomConfig, b: _Body, heart_bottom: float, rng: np.random.Generator) -> None:
    """Diaphragm domes: liver on the right, stomach/spleen on the left, under the heart."""
    g = cv.grid
    eye = np.eye(3)
    top_r = heart_bottom + rng.uniform(5, 25)
    top_l = heart_bottom + rng.uniform(-30, -5)
    cy = b.spine_y - 55
    for cx, top, hu, cls, semi in ((b.mid_x - 45, top_r, cfg.liver_hu, _T["liver"], (95, 80, 85)),
                                   (b.mid_x + 70, top_l, cfg.muscle_hu, _T["soft_tissue"], (70, 70, 70))):
        c = np.array([cx, cy, top - semi[2]])
        cv.paint(ellipsoid(g, c, eye, np.array(semi) + 3, 2), cfg.muscle_hu, _T["soft_tissue"])
        cv.paint(ellipsoid(g, c, eye, np.array(semi, float), 2), hu, cls)
    if rng.random() < 0.5:  # gas in the stomach fundus
        c = np.array([b.mid_x + 70, cy - 10, top_l - 14])
        cv.paint(ellipsoid(g, c, eye, np.array([25.0, 20.0, 9.0]), 2), -950.0, _T["air"])


def _paint_descending_aorta(cv: Canvas, cfg: PhantomConfig, b: _Body, rng: np.random.Generator) -> dict[str, Any]:
    r = rng.uniform(10, 13.5)
    cx = b.mid_x + b.vb_r + 0.6 * r + rng.uniform(0, 6)
    cy = b.spine_y - b.vb_r * rng.uniform(0.4, 0.9)
    cv.paint_full(ellipse2d(cv.grid, cx, cy, r + 1.2, r + 1.2), 45.0, _T["soft_tissue"])
    cv.paint_full(ellipse2d(cv.grid, cx, cy, r, r), cfg.contrast_hu * rng.uniform(0.95, 1.02), _T["aorta"])
    return {"descending_aorta_xy": [float(cx), float(cy)], "descending_aorta_radius_mm": float(r)}


def render_anatomy(cfg: PhantomConfig, grid: Grid, geo: HeartGeometry) -> tuple[Canvas, dict[str, Any]]:
    """Paint all large anatomy on the low-resolution grid.

    Everything that does not change along z (body wall, mediastinum, spine, descending aorta,
    sternum) is painted once on a single plane and extruded, which is 100x cheaper than 3-D.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    b = _body_layout(cfg, geo)
    plane = Canvas(Grid((1,) + grid.shape[1:], grid.spacing, (0.0,) + grid.origin[1:]), background=-1000.0)
    _paint_body_wall(plane, cfg, b)
    _paint_mediastinum(plane, cfg, b)
    landmarks = _paint_descending_aorta(plane, cfg, b, rng)
    _paint_spine(plane, cfg, b, rng)
    _paint_bone2d(plane, cfg, b.mid_x, b.sternum_y - 6.5, rng.uniform(12, 18), rng.uniform(5, 7), 1.4)
    cv = plane.extruded(grid)
    _lung_texture(cv, cfg, b, rng)
    _paint_ribs(cv, cfg, b, rng)
    _paint_discs(cv, b, rng)
    _paint_abdomen(cv, cfg, b, heart_bottom_z(geo), rng)
    landmarks.update(paint_heart(cv, cfg, geo, rng))
    _soft_texture(cv, cfg, rng)
    landmarks.update({"midline_x": b.mid_x, "spine_y": b.spine_y, "sternum_y": b.sternum_y})
    return cv, landmarks


def _soft_texture(cv: Canvas, cfg: PhantomConfig, rng: np.random.Generator) -> None:
    """Low-frequency inhomogeneity per tissue (contrast mixing, fat strands, liver parenchyma)."""
    sigma = 3.0 / np.array(cv.grid.spacing)
    field = ndimage.gaussian_filter(rng.standard_normal(cv.grid.shape, dtype=np.float32), sigma, truncate=2.5)
    field /= field.std() + 1e-6
    amp = np.zeros(256, np.float32)
    for name, value in (("blood", 0.04 * cfg.contrast_hu), ("aorta", 0.015 * cfg.contrast_hu), ("myocardium", 9.0),
                        ("fat", 9.0), ("liver", 9.0), ("soft_tissue", 5.0)):
        amp[_T[name]] = value
    cv.hu += amp[cv.cls] * field
