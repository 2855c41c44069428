"""Training patches from real CT texture: the crop's training frames with synthetic coronaries.

The phantoms teach "small bright tube = coronary"; real CT has many small bright tubes that are
not (lung vessels, chest-wall vessels, bone rims). This sampler cuts training patches from the
real crop's *training* frames (:data:`~dmic_core.segmentation.realdata.TRAIN_FRAMES`; the
evaluation frames are never read) at the model's geometry (0.375 mm x zoom pixels, 0.5 mm frames,
trilinear from the 1.5 mm scan) and

* paints synthetic coronary trees on the heart surface: per *virtual patient* (``n_patients``),
  10-14 centrelines walked on the shell 1.5-4 mm outside the TotalSegmentator heart mask (started
  in fat, stopped where they would enter lung or a great vessel), tapered
  lumen 2.2 -> 0.6 mm radius in a fat sheath, contrast 75-105 % of the crop's aortic lumen with
  a distal drop, soft edges 0.3-1.2 mm (matching the crop's blur); label = voxel centres inside
  the lumen radius;
* uses real negatives as hard negatives: lung vessels, bone, aorta / pulmonary-artery lumen and
  wall, bright structures farther than 10 mm from the heart, the below-heart frames and random
  patches;
* ignores (loss weight 0) real bright voxels near the heart surface that are not synthetic: they
  may be the patient's own coronaries, which have no label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dmic_core.segmentation.plausibility import signed_distance
from dmic_core.segmentation.realdata import TRAIN_FRAMES, Crop

#: Model geometry patches are cut at (mm): nominal pixel and frame spacing.
PIXEL_MM = 0.375
FRAME_MM = 0.5


@dataclass
class Centreline:
    points: np.ndarray  # (n, 3) mm, (z, y, x) with voxel 0 of the crop at 0
    radius: np.ndarray  # (n,) mm
    hu: np.ndarray  # (n,) lumen HU
    lo: np.ndarray  # bounding box (mm)
    hi: np.ndarray


class RealTextureSampler:
    """Draws ``(k, P, P)`` HU patches, 0/1 labels and loss weights from the crop's training frames."""

    def __init__(self, crop: Crop, seed: int = 0, n_patients: int = 48,
                 frames: tuple[tuple[int, int], ...] = TRAIN_FRAMES) -> None:
        if len(frames) != 1:
            raise ValueError("the sampler takes one contiguous frame range")
        self.spacing = np.asarray(crop.spacing, float)
        self.z_lo, self.z_hi = frames[0][0], frames[0][1] - 1  # inclusive frame indices
        self.hu = np.ascontiguousarray(crop.hu, dtype=np.float32)
        self.sd = signed_distance(crop.heart, tuple(self.spacing))
        self.gv = crop.great_vessels
        grad = np.gradient(self.sd, *self.spacing)
        self.grad = [g.astype(np.float32) for g in grad]
        regions = crop.regions()
        self.aorta_hu = float(np.median(self.hu[crop.great_vessels & (self.hu > 150)]))
        rng = np.random.default_rng([seed, 77])
        sel = np.zeros(self.hu.shape, bool)
        sel[self.z_lo + 1:self.z_hi] = True
        bright = (self.hu > 150) & sel
        heart_z = np.flatnonzero(crop.heart.any((1, 2)))
        gv_wall = ndimage.binary_dilation(self.gv, iterations=2) & ~ndimage.binary_erosion(self.gv, iterations=2)
        below = sel.copy()
        below[heart_z.min():] = False
        self.negatives = {name: np.argwhere(m) for name, m in (
            ("lung_vessel", bright & regions.lung), ("bone", regions.bone & sel),
            ("great_vessel", gv_wall & sel), ("far_bright", bright & (self.sd > 10)),
            ("below_heart", below & (self.hu > -500)), ("anywhere", sel & (self.hu > -900)))}
        self.negatives = {k: v for k, v in self.negatives.items() if len(v)}
        self.patients = [self._patient(rng) for _ in range(n_patients)]
        self.patients = [p for p in self.patients if p]

    # ------------------------------------------------------------------------------ trees
    def _interp(self, arr: np.ndarray, pts_mm: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(arr, (pts_mm / self.spacing).T, order=1, mode="nearest")

    def _walk(self, rng: np.random.Generator, start: np.ndarray, length: float) -> np.ndarray | None:
        target = rng.uniform(1.5, 4.0)
        p = start.astype(float)
        n0 = np.array([self._interp(g, p[None])[0] for g in self.grad])
        d = rng.standard_normal(3)
        d -= d.dot(n0) * n0
        d /= np.linalg.norm(d) + 1e-9
        turn = rng.uniform(0.02, 0.12)
        pts = [p.copy()]
        z_min, z_max = (self.z_lo + 1) * self.spacing[0], (self.z_hi - 1) * self.spacing[0]
        for _ in range(int(length)):
            q = p + d
            for _it in range(2):  # back onto the shell along the distance gradient
                n = np.array([self._interp(g, q[None])[0] for g in self.grad])
                n /= np.linalg.norm(n) + 1e-9
                q = q - (self._interp(self.sd, q[None])[0] - target) * n
            if not (z_min <= q[0] <= z_max) or np.any(q < 0) or np.any(q > (np.array(self.hu.shape) - 1) * self.spacing):
                break
            if self.gv[tuple(np.rint(q / self.spacing).astype(int))] or self._interp(self.hu, q[None])[0] < -300:
                break  # coronaries run in epicardial fat: stop at the great vessels and the lung
            step = q - p
            if np.linalg.norm(step) < 0.3:
                break
            d = step / np.linalg.norm(step) + turn * rng.standard_normal(3)
            d -= d.dot(n) * n
            d /= np.linalg.norm(d) + 1e-9
            p = q
            pts.append(p.copy())
        return np.array(pts) if len(pts) >= 15 else None

    def _patient(self, rng: np.random.Generator) -> list[Centreline]:
        shell = np.argwhere((self.sd > 1.0) & (self.sd < 4.0) & (self.hu > -250) & (self.hu < 100))
        shell = shell[(shell[:, 0] > self.z_lo + 2) & (shell[:, 0] < self.z_hi - 2)]
        lumen = self.aorta_hu * rng.uniform(0.75, 1.05)
        out = []
        for _ in range(int(rng.integers(10, 15))):
            pts = self._walk(rng, shell[int(rng.integers(len(shell)))] * self.spacing, rng.uniform(30, 110))
            if pts is None:
                continue
            s = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
            frac = s / max(s[-1], 1e-6)
            r0, r1 = rng.uniform(1.1, 2.2), rng.uniform(0.6, 1.0)
            radius = r0 + (r1 - r0) * frac
            hu = lumen * (1.0 - rng.uniform(0.05, 0.22) * frac)
            out.append(Centreline(pts, radius, hu, pts.min(0) - 4, pts.max(0) + 4))
        return out

    # ---------------------------------------------------------------------------- patches
    def _grid(self, centre: np.ndarray, k: int, p: int, pixel: float) -> np.ndarray:
        """(3, k, p, p) mm coordinates of a patch (frames FRAME_MM apart, pixels ``pixel``)."""
        half = k // 2
        z = centre[0] + FRAME_MM * np.arange(-half, half + 1)
        off = pixel * (np.arange(p) - (p - 1) / 2)
        zz, yy, xx = np.meshgrid(z, centre[1] + off, centre[2] + off, indexing="ij")
        return np.stack([zz, yy, xx])

    def _clamp(self, c: np.ndarray, k: int, p: int, pixel: float) -> np.ndarray:
        half_z = FRAME_MM * (k // 2)
        c = c.astype(float).copy()
        c[0] = np.clip(c[0], self.z_lo * self.spacing[0] + half_z, self.z_hi * self.spacing[0] - half_z)
        for a in (1, 2):
            ext = (self.hu.shape[a] - 1) * self.spacing[a]
            half = pixel * (p - 1) / 2
            c[a] = np.clip(c[a], min(half, ext / 2), max(ext - half, ext / 2))
        return c

    def sample(self, rng: np.random.Generator, k: int, p: int, zoom: float,
               vessel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One patch: HU ``(k, p, p)``, label ``(p, p)`` of the centre frame, loss weight ``(p, p)``.

        ``vessel``: centre it on a synthetic coronary (else on a hard negative); a virtual patient's
        trees are painted in every patch near the heart.
        """
        pixel = PIXEL_MM * zoom
        patient = self.patients[int(rng.integers(len(self.patients)))]
        if vessel:
            cl = patient[int(rng.integers(len(patient)))]
            c = cl.points[int(rng.integers(len(cl.points)))].copy()
            c[1:] += rng.uniform(-1, 1, 2) * pixel * p / 3
        else:
            names = sorted(self.negatives)
            idx = self.negatives[names[int(rng.integers(len(names)))]]
            c = (idx[int(rng.integers(len(idx)))] + rng.uniform(-0.5, 0.5, 3)) * self.spacing
        c = self._clamp(c, k, p, pixel)
        grid = self._grid(c, k, p, pixel)
        coords = grid.reshape(3, -1) / self.spacing[:, None]
        img = ndimage.map_coordinates(self.hu, coords, order=1, mode="nearest").reshape(k, p, p)
        sd = ndimage.map_coordinates(self.sd, coords[:, (k // 2) * p * p:(k // 2 + 1) * p * p], order=1,
                                     mode="nearest").reshape(p, p)
        gv = ndimage.map_coordinates(self.gv.astype(np.float32), coords[:, (k // 2) * p * p:(k // 2 + 1) * p * p],
                                     order=0, mode="nearest").reshape(p, p) > 0.5
        label = np.zeros((p, p), np.float32)
        lo, hi = grid.reshape(3, -1).min(1), grid.reshape(3, -1).max(1)
        edge = rng.uniform(0.3, 1.2)
        painted = np.zeros((k, p, p), bool)
        for cl in patient:
            if np.any(cl.hi < lo) or np.any(cl.lo > hi):
                continue
            dist, rad, hu = _polyline_distance(grid, cl, lo, hi)
            if dist is None:
                continue
            sheath = np.clip((rad + 1.5 - dist) / edge + 0.5, 0, 1) * (img < 150) * (img > -500)
            img += sheath * (-90.0 - img)
            occ = np.clip((rad - dist) / edge + 0.5, 0, 1)
            img += occ * (hu - img)
            label = np.maximum(label, (dist[k // 2] < rad[k // 2]).astype(np.float32))
            painted |= dist < rad + 1.0
        # the patient's own (unlabelled) vessels near the heart are unknown: no loss there
        unknown = (img[k // 2] > 200) & (sd > -1.0) & (sd < 12.0) & ~gv & ~painted[k // 2]
        weight = (~ndimage.binary_dilation(unknown, iterations=2)).astype(np.float32)
        return img, label, weight


def _polyline_distance(grid: np.ndarray, cl: Centreline, lo: np.ndarray, hi: np.ndarray, reach: float = 4.5):
    """Distance (mm) from patch voxels to the centreline (inf beyond ``reach`` of it), with the
    radius and HU of the nearest point. ``grid`` is a regular ``(3, k, p, p)`` patch grid; each
    segment is evaluated only in its bounding box."""
    keep = np.all((cl.points >= lo - reach) & (cl.points <= hi + reach), axis=1)
    ids = np.flatnonzero(keep[:-1] & keep[1:])
    if len(ids) == 0:
        return None, None, None
    shape = grid.shape[1:]
    y0, x0 = grid[1, 0, 0, 0], grid[2, 0, 0, 0]
    pix = grid[1, 0, 1, 0] - y0
    best = np.full(shape, np.inf, np.float32)
    rad = np.zeros(shape, np.float32)
    hu = np.zeros(shape, np.float32)
    zc = grid[0, :, 0, 0]
    for j in ids:
        a, b = cl.points[j], cl.points[j + 1]
        blo, bhi = np.minimum(a, b) - reach, np.maximum(a, b) + reach
        i0, i1 = max(0, int((blo[1] - y0) / pix)), min(shape[1], int(np.ceil((bhi[1] - y0) / pix)) + 1)
        k0, k1 = max(0, int((blo[2] - x0) / pix)), min(shape[2], int(np.ceil((bhi[2] - x0) / pix)) + 1)
        if i1 <= i0 or k1 <= k0 or zc[-1] < blo[0] or zc[0] > bhi[0]:
            continue
        sub = grid[:, :, i0:i1, k0:k1]
        ab = b - a
        rel = sub - a[:, None, None, None]
        t = np.clip(np.tensordot(ab, rel, 1) / max(ab @ ab, 1e-9), 0, 1)
        d = np.sqrt(((rel - t[None] * ab[:, None, None, None]) ** 2).sum(0))
        view = best[:, i0:i1, k0:k1]
        better = d < view
        view[better] = d[better]
        rad[:, i0:i1, k0:k1][better] = (cl.radius[j] + t * (cl.radius[j + 1] - cl.radius[j]))[better]
        hu[:, i0:i1, k0:k1][better] = cl.hu[j]
    if not np.isfinite(best).any():
        return None, None, None
    return best, rad, hu


__all__ = ["RealTextureSampler", "Centreline", "PIXEL_MM", "FRAME_MM"]
