"""The one in-memory representation of a CT volume.

Frames are axial slices in one canonical orientation: the array is indexed ``hu[z, y, x]`` with
x increasing towards the patient's Left, y towards Posterior and z towards Superior (LPS voxel
order, the radiological display convention: anterior at the top of a frame, the patient's right
on its left). Readers reorient to it; writers undo the reorientation so a decoded volume overlays
the original file in any viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmic_core.errors import DmicInputError

#: HU range that 16-bit CT storage covers and that the 12-bit default mapping keeps whole.
HU_MIN = -1024
HU_MAX = 3071


@dataclass
class Volume:
    """A CT volume in Hounsfield units on its acquisition grid.

    Attributes:
        hu: int16 array ``(Z, Y, X)`` in the canonical LPS voxel order described above.
        spacing: voxel size in mm, ``(z, y, x)`` to match the array axes.
        affine: 4x4 voxel-to-RAS+ world matrix of the *file's* voxel grid (NIfTI convention).
        file_shape: shape of the data in the file's own voxel order.
        to_canonical: nibabel orientation transform (``ornt``) from file voxel axes to the
            canonical (x, y, z) LPS axes; writers apply its inverse.
        source: where it came from (path and format), never patient identifiers.
        meta: extra non-identifying facts (e.g. rescale, modality, number of DICOM files).
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    file_shape: tuple[int, ...]
    to_canonical: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(frames, height, width)`` of the canonical array."""
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def n_frames(self) -> int:
        return int(self.hu.shape[0])

    def with_array(self, array: np.ndarray) -> "Volume":
        """A volume on the same grid holding ``array`` (e.g. a decoded reconstruction or a mask)."""
        if array.shape != self.hu.shape:
            raise ValueError(f"array shape {array.shape} does not match volume shape {self.hu.shape}")
        return Volume(array, self.spacing, self.affine.copy(), self.file_shape, self.to_canonical.copy(),
                      dict(self.source), dict(self.meta))

    def slab(self, start: int, stop: int) -> "Volume":
        """The frames ``start:stop`` as their own volume (spacing kept, affine shifted along z)."""
        if not (0 <= start < stop <= self.n_frames):
            raise ValueError(f"slice range {start}:{stop} outside 0:{self.n_frames}")
        sub = self.hu[start:stop]
        affine, file_shape = _slab_affine(self, start, stop)
        return Volume(sub, self.spacing, affine, file_shape, self.to_canonical.copy(),
                      dict(self.source), dict(self.meta))


def _slab_affine(volume: Volume, start: int, stop: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Affine and file shape of the frames ``start:stop`` of ``volume`` on the file grid.

    Grid arithmetic of :class:`Volume` itself (no nibabel), so it lives here and :mod:`dmic_core.io`
    stays the only side that depends on the other.
    """
    file_axis = next(i for i, (target, _f) in enumerate(volume.to_canonical) if int(target) == 2)
    flipped = volume.to_canonical[file_axis, 1] < 0
    n = volume.file_shape[file_axis]
    first_file_index = (n - stop) if flipped else start
    shift = np.eye(4)
    shift[file_axis, 3] = first_file_index
    shape = list(volume.file_shape)
    shape[file_axis] = stop - start
    return volume.affine @ shift, tuple(shape)


def parse_slices(text: str | None, n_frames: int, source: str | Path) -> tuple[int, int]:
    """``A:B`` (Python slice, either end optional, negatives from the end) -> checked (start, stop).

    The frame range of ``dmic ... --slices`` and of a batch's ``slices`` setting (resolved per volume
    in the job tasks), so one rule and one message serve both.
    """
    if text is None:
        return 0, n_frames
    try:
        a, b = text.split(":")
        start = int(a) if a else 0
        stop = int(b) if b else n_frames
    except ValueError:
        raise DmicInputError(f"--slices must look like A:B, got {text!r}", source) from None
    if start < 0:
        start += n_frames
    if stop < 0:
        stop += n_frames
    if not 0 <= start < stop <= n_frames:
        raise DmicInputError(f"--slices {text} is outside the volume's 0:{n_frames} frames", source)
    return start, stop
