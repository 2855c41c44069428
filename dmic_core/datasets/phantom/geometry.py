"""Sampling and geometry: voxel grids, soft-edged shapes as distance fields, the painting canvas,
and 2x upsampling from the half-resolution anatomy grid to the full grid.

Shapes are signed distances in mm evaluated only inside their bounding boxes, so painting a
structure costs its box and not the whole volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Grid:
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


def ellipsoid(grid: Grid, center: np.ndarray, axes: np.ndarray, semi: np.ndarray,
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


def capsule(grid: Grid, a: np.ndarray, b: np.ndarray, ra: float, rb: float,
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


def ellipse2d(grid: Grid, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse, shape ``(1, Y, X)``."""
    _z, y, x = grid.coords()
    rho = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return (rho - 1.0) * np.float32(2.0 / (1.0 / ax + 1.0 / ay))


class Canvas:
    """Low-resolution HU image plus tissue classes, painted back to front with soft edges."""

    def __init__(self, grid: Grid, background: float) -> None:
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

    def extruded(self, grid: Grid) -> "Canvas":
        """A 3-D canvas on ``grid`` whose every slice is this single-plane canvas."""
        out = Canvas.__new__(Canvas)
        out.grid, out.ramp = grid, self.ramp
        out.hu = np.ascontiguousarray(np.broadcast_to(self.hu, grid.shape))
        out.cls = np.ascontiguousarray(np.broadcast_to(self.cls, grid.shape))
        return out

    def paint_full(self, dist2d: np.ndarray, value: float | np.ndarray, cls: int,
                   where: np.ndarray | None = None) -> None:
        """:meth:`paint` for a 2-D (z-invariant) distance map over the whole grid."""
        self.paint((self.grid.full, dist2d), value, cls, where)


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


def upsample2_into(a: np.ndarray, out: np.ndarray) -> None:
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


def nearest_up2(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour 2x upsampling of a label map."""
    out = a.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    return np.ascontiguousarray(out[: shape[0], : shape[1], : shape[2]])
