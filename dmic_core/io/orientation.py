"""Between a file's voxel grid and the canonical frame order (LPS voxel axes, frames along z).

The only place that knows how file axes map to frames: readers call :func:`to_canonical`,
writers call :func:`from_canonical`, so a decoded volume goes back onto exactly the input grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nibabel import orientations as nio

from dmic_core.volume import Volume

#: Canonical voxel axes (x, y, z): towards patient Left, Posterior, Superior.
CANONICAL_AXCODES = ("L", "P", "S")
_CANONICAL_ORNT = nio.axcodes2ornt(CANONICAL_AXCODES)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each file axis."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def to_canonical(data_xyz: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                       tuple[float, float, float]]:
    """Reorient file-ordered 3-D data to canonical frames.

    Returns ``(array_zyx, ornt_transform, spacing_zyx)``; the transform maps file axes to the
    canonical (x, y, z) axes and is what :func:`from_canonical` inverts.
    """
    transform = nio.ornt_transform(nio.io_orientation(affine), _CANONICAL_ORNT)
    canonical_xyz = nio.apply_orientation(data_xyz, transform)
    spacing_xyz = np.empty(3)
    for file_axis, (target_axis, _flip) in enumerate(transform):
        spacing_xyz[int(target_axis)] = voxel_sizes(affine)[file_axis]
    spacing_zyx = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))
    return np.ascontiguousarray(canonical_xyz.transpose(2, 1, 0)), transform, spacing_zyx


def from_canonical(array_zyx: np.ndarray, volume: Volume) -> np.ndarray:
    """Put a canonical ``(Z, Y, X)`` array (e.g. a reconstruction or mask) back in file order."""
    if array_zyx.shape != volume.hu.shape:
        raise ValueError(f"array shape {array_zyx.shape} does not match volume {volume.hu.shape}")
    inverse = nio.ornt_transform(_CANONICAL_ORNT, _file_ornt(volume.to_canonical))
    data = nio.apply_orientation(array_zyx.transpose(2, 1, 0), inverse)
    if tuple(data.shape) != tuple(volume.file_shape):
        raise AssertionError(f"reorientation gave {data.shape}, file has {volume.file_shape}")
    return np.ascontiguousarray(data)


def _file_ornt(transform: np.ndarray) -> np.ndarray:
    """The file's own orientation, recovered from its file->canonical transform."""
    ornt = np.empty((3, 2))
    for file_axis, (target_axis, flip) in enumerate(transform):
        ornt[file_axis] = (_CANONICAL_ORNT[int(target_axis), 0], _CANONICAL_ORNT[int(target_axis), 1] * flip)
    return ornt


def canonical_volume(hu_zyx: np.ndarray, spacing_zyx: tuple[float, float, float],
                     origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
                     source: dict[str, Any] | None = None) -> Volume:
    """A volume whose file grid *is* the canonical grid (used for generated phantoms)."""
    sz, sy, sx = (float(s) for s in spacing_zyx)
    ox, oy, oz = (float(o) for o in origin_lps)
    affine = np.array([[-sx, 0, 0, -ox], [0, -sy, 0, -oy], [0, 0, sz, oz], [0, 0, 0, 1]], dtype=np.float64)
    identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=np.float64)
    z, y, x = hu_zyx.shape
    return Volume(np.ascontiguousarray(hu_zyx, dtype=np.int16), (sz, sy, sx), affine, (x, y, z),
                  identity, dict(source or {}), {})
