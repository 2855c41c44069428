"""The ideal segmenter: hands back the reference labels, whatever the (decoded) image shows.

Useful as an upper bound and to test pipelines without a model in the loop.
"""

from __future__ import annotations

import numpy as np

from dmic_core.errors import DmicInputError
from dmic_core.segmentation.base import Segmenter, as_hu_array
from dmic_core.volume import Volume


class GroundTruthSegmenter(Segmenter):
    """Returns ``label > 0`` for any volume on the label's grid.

    Args:
        label: reference mask ``(Z, Y, X)`` on the canonical grid (any integer/bool dtype, or a
            :class:`Volume` holding it).
    """

    name = "gt"

    def __init__(self, label: np.ndarray | Volume) -> None:
        array = label.hu if isinstance(label, Volume) else np.asarray(label)
        if array.ndim != 3:
            raise DmicInputError(f"ground-truth label must be 3-D (Z, Y, X), got shape {array.shape}")
        self.label = (array > 0).astype(np.uint8)

    def _check(self, volume: Volume | np.ndarray) -> None:
        shape = as_hu_array(volume).shape
        if shape != self.label.shape:
            raise DmicInputError(f"label shape {self.label.shape} does not match volume shape {shape}")

    def segment(self, volume: Volume | np.ndarray) -> np.ndarray:
        self._check(volume)
        return self.label.copy()

    def probabilities(self, volume: Volume | np.ndarray) -> np.ndarray:
        self._check(volume)
        return self.label.astype(np.float32)
