"""The pretraining (source) task: large bright-structure segmentation by a fixed HU threshold.

The paper pretrains HRLVSC on natural video with a segmentation task, then transfers to
coronary segmentation. We cannot ship natural video, so the source domain here is the same
kind of slices with a *different task*: the blood pool and other large enhanced structures
(aorta, cardiac chambers, pulmonary trunk, large veins, vertebral bodies), found by a fixed rule
instead of a learned model:

1. smooth each slice with a 3 x 3 mean (so the mask follows coding noise, as a model would),
2. keep HU in [``lo``, ``hi``) (contrast-enhanced blood, not dense calcium or cortical bone),
3. drop structures thinner than ~``min_width_mm`` by a morphological opening on a 2x coarser
   grid (coronary arteries, 1.5-4 mm, are removed: the target task's vessels are *not* the
   source task's foreground), and keep the full-resolution threshold inside what survives.

Its masks are large, smooth regions (tens of CTUs per slice) while the target's are thin
curvilinear vessels in a few CTUs, so transfer from it is a real domain shift.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dmic_core.segmentation.base import Segmenter, as_hu_array
from dmic_core.volume import Volume


class LumenThresholdSegmenter(Segmenter):
    """Large enhanced structures: smoothed HU in ``[lo, hi)`` minus all thinner than ``min_width_mm``."""

    name = "lumen-threshold"

    def __init__(self, lo: float = 250.0, hi: float = 900.0, min_width_mm: float = 10.0,
                 pixel_mm: float | None = None):
        self.lo, self.hi, self.min_width_mm, self.pixel_mm = lo, hi, min_width_mm, pixel_mm

    def segment(self, volume: Volume | np.ndarray) -> np.ndarray:
        hu = as_hu_array(volume).astype(np.float32)
        pixel = self.pixel_mm
        if pixel is None:
            pixel = float(volume.spacing[1]) if isinstance(volume, Volume) else 0.4
        smooth = ndimage.uniform_filter(hu, size=(1, 3, 3), mode="nearest")
        fg = (smooth >= self.lo) & (smooth < self.hi)
        n, h, w = fg.shape
        h2, w2 = h // 2 * 2, w // 2 * 2
        coarse = fg[:, :h2, :w2].reshape(n, h2 // 2, 2, w2 // 2, 2).mean(axis=(2, 4)) >= 0.5
        radius = max(1, int(round(self.min_width_mm / (2.0 * pixel) / 2.0)))
        yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
        disk = (yy * yy + xx * xx <= radius * radius)[None]
        opened = ndimage.binary_opening(coarse, structure=disk)
        keep = np.zeros_like(fg)
        keep[:, :h2, :w2] = np.repeat(np.repeat(opened, 2, axis=1), 2, axis=2)
        if h2 < h:
            keep[:, h2:, :w2] = keep[:, h2 - 1: h2, :w2]
        if w2 < w:
            keep[:, :, w2:] = keep[:, :, w2 - 1: w2]
        return (fg & keep).astype(np.uint8)
