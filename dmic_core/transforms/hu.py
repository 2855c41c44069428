"""Hounsfield units <-> codec samples, and frame padding for the codec's size rules.

A :class:`SampleMapping` is a uniform quantiser of a half-open HU window ``[lo, hi)`` onto the
``2**bit_depth`` levels of the video samples. Its default window is
:func:`dmic_core.defaults.default_window`: at 12 bits the whole 16-bit CT range, one HU per level,
so coding is lossless up to the codec's own loss; at 8 and 10 bits the paper's 1024-HU CCTA
window. Every path that codes HU (CLI, sweeps, batches, the app) goes through it. ``window_hu`` is what
:func:`dmic_core.codecs.qp.qp_shift` needs to keep paper QPs meaning the same HU step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from dmic_core.defaults import BIT_DEPTHS, CCTA_WINDOW, FULL_WINDOW, default_window

_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class SampleMapping:
    """Uniform HU window -> ``bit_depth`` samples and back.

    Attributes:
        bit_depth: 8, 10 or 12.
        window: ``(lo, hi)`` in HU, half-open; ``None`` picks :func:`~dmic_core.defaults.default_window`.
    """

    bit_depth: int = 12
    window: tuple[float, float] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.bit_depth not in BIT_DEPTHS:
            raise ValueError(f"bit depth must be one of {BIT_DEPTHS}, got {self.bit_depth}")
        window = self.window
        if window is None:
            window = default_window(self.bit_depth)
        lo, hi = (float(w) for w in window)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"window must be finite with hi > lo, got {window}")
        object.__setattr__(self, "window", (lo, hi))

    @property
    def levels(self) -> int:
        return 1 << self.bit_depth

    @property
    def window_hu(self) -> float:
        """Window width ``hi - lo`` in HU (the input of ``qp_shift``)."""
        lo, hi = self.window  # type: ignore[misc]
        return hi - lo

    @property
    def hu_per_level(self) -> float:
        return self.window_hu / self.levels

    def to_samples(self, hu: np.ndarray) -> np.ndarray:
        """uint16 samples: ``floor((hu - lo) / hu_per_level)`` clipped to ``0 .. levels-1``.

        At 12 bits with the default window this is exactly ``clip(hu, -1024, 3071) + 1024``.
        """
        hu = np.asarray(hu)
        lo_int = self._unit_offset()
        if lo_int is not None and np.issubdtype(hu.dtype, np.integer):
            # one HU per level: the same numbers in integers, no float64 copy of the volume
            return _by_slab(hu, np.uint16, lambda a: np.clip(a.astype(np.int32) - lo_int, 0,
                                                             self.levels - 1).astype(np.uint16))
        return _by_slab(hu, np.uint16, self._to_samples_float)

    def _to_samples_float(self, hu: np.ndarray) -> np.ndarray:
        lo, _hi = self.window  # type: ignore[misc]
        scaled = np.floor((np.asarray(hu, dtype=np.float64) - lo) * (self.levels / self.window_hu))
        return np.clip(scaled, 0, self.levels - 1).astype(np.uint16)

    def _unit_offset(self) -> int | None:
        """``lo`` as an int when one level is exactly one HU and ``lo`` is whole (the 12-bit
        default): then ``to_samples`` is ``clip(hu - lo)`` and ``to_hu`` is ``lo + samples`` exactly."""
        lo, _hi = self.window  # type: ignore[misc]
        if self.levels / self.window_hu == 1.0 and float(lo).is_integer():
            return int(lo)
        return None

    def to_hu(self, samples: np.ndarray) -> np.ndarray:
        """int16 HU of each level: the integer nearest the level's centre that the level holds.

        The exact inverse of :meth:`to_samples` wherever one level is one HU (12 bits default);
        otherwise within half a level for HU inside the window, and re-encoding a decoded value
        gives back its level (whenever levels are at least 1 HU wide).
        """
        samples = np.asarray(samples)
        lo_int = self._unit_offset()
        if lo_int is not None and np.issubdtype(samples.dtype, np.integer):
            return _by_slab(samples, np.int16, lambda a: np.clip(a.astype(np.int32) + lo_int, _INT16.min,
                                                                 _INT16.max).astype(np.int16))
        return _by_slab(samples, np.int16, self._to_hu_float)

    def _to_hu_float(self, samples: np.ndarray) -> np.ndarray:
        lo, _hi = self.window  # type: ignore[misc]
        s = np.asarray(samples, dtype=np.float64)
        hu = np.floor(lo + (s + 0.5) * self.hu_per_level + 0.5)
        if self.hu_per_level >= 1.0:
            # the rounded centre can land just outside its level: step back in (same test as to_samples)
            level = np.floor((hu - lo) * (self.levels / self.window_hu))
            hu += (level < s).astype(np.float64) - (level > s).astype(np.float64)
        return np.clip(hu, _INT16.min, _INT16.max).astype(np.int16)

    def clipped_fraction(self, hu: np.ndarray) -> float:
        """Fraction of voxels outside the window (their HU cannot survive coding)."""
        lo, hi = self.window  # type: ignore[misc]
        hu = np.asarray(hu)
        if hu.size == 0:
            return 0.0
        return float(np.count_nonzero((hu < lo) | (hu >= hi)) / hu.size)


#: Frames converted at a time by :class:`SampleMapping` (bounds its temporaries to a slab).
SLAB_FRAMES = 16


def _by_slab(array: np.ndarray, dtype, convert) -> np.ndarray:
    """``convert`` applied elementwise, ``SLAB_FRAMES`` frames at a time into one output array:
    the same values as on the whole array, with temporaries the size of a slab."""
    if array.ndim < 3 or array.shape[0] <= SLAB_FRAMES:
        return convert(array)
    out = np.empty(array.shape, dtype=dtype)
    for start in range(0, array.shape[0], SLAB_FRAMES):
        out[start:start + SLAB_FRAMES] = convert(array[start:start + SLAB_FRAMES])
    return out


def pad_frames(frames: np.ndarray, multiple: int = 8,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """Pad ``(N, H, W)`` frames at the bottom/right by edge replication.

    To multiples of ``multiple``, or to ``size`` (a codec's ``coded_frame_size``) when given.
    Replicated edges cost almost no bits and, unlike zeros, add no artificial edge.
    """
    if frames.ndim != 3:
        raise ValueError(f"need (frames, height, width), got shape {frames.shape}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    _n, h, w = frames.shape
    if size is None:
        size = (h + (-h) % multiple, w + (-w) % multiple)
    if size[0] < h or size[1] < w:
        raise ValueError(f"cannot pad frames of {h}x{w} to the smaller size {size[0]}x{size[1]}")
    pad_h, pad_w = size[0] - h, size[1] - w
    if pad_h == 0 and pad_w == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")


def crop_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_frames`: the top-left ``(H, W)`` of every frame."""
    h, w = size
    if frames.ndim != 3 or frames.shape[1] < h or frames.shape[2] < w:
        raise ValueError(f"cannot crop frames of shape {frames.shape} to {size}")
    return frames[:, :h, :w]


class _ArrayDictTransform:
    """Dict transform (MONAI style): apply :meth:`apply` to the arrays under ``keys``."""

    def __init__(self, keys: Sequence[Hashable], mapping: SampleMapping) -> None:
        self.keys = tuple(keys)
        self.mapping = mapping

    def apply(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            d[key] = self.apply(d[key])
        return d


class ToSamplesd(_ArrayDictTransform):
    """Map HU arrays under ``keys`` to codec samples, padded to multiples of ``pad_multiple``."""

    def __init__(self, keys: Sequence[Hashable], mapping: SampleMapping,
                 pad_multiple: int | None = 8) -> None:
        super().__init__(keys, mapping)
        self.pad_multiple = pad_multiple

    def apply(self, array: np.ndarray) -> np.ndarray:
        samples = self.mapping.to_samples(array)
        return samples if self.pad_multiple is None else pad_frames(samples, self.pad_multiple)


class ToHUd(_ArrayDictTransform):
    """Decoded samples under ``keys`` back to HU, cropped to ``size``."""

    def __init__(self, keys: Sequence[Hashable], mapping: SampleMapping,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(keys, mapping)
        self.size = size

    def apply(self, array: np.ndarray) -> np.ndarray:
        return self.mapping.to_hu(array if self.size is None else crop_frames(array, self.size))


__all__ = ["BIT_DEPTHS", "CCTA_WINDOW", "FULL_WINDOW", "SampleMapping", "ToHUd", "ToSamplesd",
           "crop_frames", "pad_frames"]
