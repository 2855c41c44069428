"""The diagnosis task behind the codec: a segmenter turns a CT volume into a vessel mask.

Every segmenter (the shipped U-Net, a user's TorchScript model, the ground-truth passthrough)
implements :class:`Segmenter`, so compression sweeps, agents' rewards and the app score decoded
volumes the same way whatever model does the segmenting.
"""

from __future__ import annotations

import abc

import numpy as np

from dmic_core.errors import DmicInputError
from dmic_core.volume import Volume

#: Probability at and above which a voxel is called vessel.
DEFAULT_THRESHOLD = 0.5


def as_hu_array(volume: Volume | np.ndarray) -> np.ndarray:
    """The ``(Z, Y, X)`` HU array of a :class:`Volume` (or of a bare array), validated."""
    hu = volume.hu if isinstance(volume, Volume) else np.asarray(volume)
    if hu.ndim != 3:
        raise DmicInputError(f"expected a 3-D (Z, Y, X) volume, got shape {hu.shape}")
    if hu.size == 0:
        raise DmicInputError("the volume is empty")
    if not np.issubdtype(hu.dtype, np.number) or np.issubdtype(hu.dtype, np.complexfloating):
        raise DmicInputError(f"expected numeric HU values, got dtype {hu.dtype}")
    return hu


class Segmenter(abc.ABC):
    """Coronary-artery (vessel) segmentation of a canonical CT volume.

    Subclasses implement :meth:`probabilities` (vessel probability per voxel), or override
    :meth:`segment` directly when they have no probabilities (e.g. ground truth).
    """

    #: Short identifier reported with results (``"builtin-unet"``, ``"gt"``, ``"torchscript:x.pt"``).
    name: str = "segmenter"
    threshold: float = DEFAULT_THRESHOLD

    def probabilities(self, volume: Volume | np.ndarray) -> np.ndarray:
        """float32 ``(Z, Y, X)`` vessel probabilities in [0, 1] (optional capability)."""
        raise NotImplementedError(f"{self.name} does not provide probabilities")

    def segment(self, volume: Volume | np.ndarray) -> np.ndarray:
        """uint8 ``(Z, Y, X)`` mask, 1 for vessel, on the volume's canonical grid."""
        prob = self.probabilities(volume)
        return (prob >= self.threshold).astype(np.uint8)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
