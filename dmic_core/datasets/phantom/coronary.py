"""The coronary trees: centrelines walked on the heart surface (with branches, stenoses and
tapering), then drawn at full resolution in small boxes around centreline chunks, with calcium.

The label is the lumen (voxel centres inside the lumen radius), coronary trees only, like ImageCAS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmic_core.datasets.phantom.config import PhantomConfig
from dmic_core.datasets.phantom.geometry import Grid, ellipsoid
from dmic_core.datasets.phantom.heart import HeartGeometry, HeartSurface


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


class TreeBuilder:
    """Builds the left and right coronary trees of one heart from a random stream."""

    def __init__(self, cfg: PhantomConfig, geo: HeartGeometry, rng: np.random.Generator) -> None:
        self.cfg, self.geo, self.rng = cfg, geo, rng
        self.surf = HeartSurface(geo.lv_out, geo.rv_out)
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


@dataclass
class _VesselSamples:
    """Voxels near the coronaries (flat indices) with their signed distances and lumen HU."""

    index: np.ndarray
    lumen: np.ndarray
    outer: np.ndarray
    hu: np.ndarray


def vessel_samples(grid: Grid, vessels: list[tuple[np.ndarray, _Vessel]], contrast: float,
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


def _chunk_samples(grid: Grid, pts: np.ndarray, r: np.ndarray, outer: np.ndarray, hu: np.ndarray,
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


def draw_coronaries(img: np.ndarray, label: np.ndarray, grid: Grid, vs: _VesselSamples,
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


def draw_calcium(img: np.ndarray, label: np.ndarray, grid: Grid, vessels: list[tuple[np.ndarray, _Vessel]],
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
        shape = ellipsoid(grid, center, axes, np.array([semi * rng.uniform(1.2, 2.5), semi, semi]), 1.0)
        if shape is None:
            continue
        box, dist = shape
        occ = np.clip(0.5 - dist / float(grid.spacing[1]), 0, 1)
        hu = rng.uniform(900, 2000)
        img[box] += occ * (hu - img[box])
        label[box][occ > 0.5] = 0
        found.append({"vessel": v.name, "center_lps": center.round(2).tolist(), "hu": round(float(hu))})
    return found
