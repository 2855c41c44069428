"""Flip-averaged vessel probabilities: a research probe of how stable a segmenter's mask is.

Averaging a model's probabilities over in-plane mirror images of its input (test-time
augmentation) keeps what the model finds whichever way the scan is mirrored and fades what it
finds only one way. On validation phantoms that cuts the mask's CTUs without label while missing
no more of the label's; on the real CT it drops a third or more of the model's own mask CTUs
(``bench/roi_ctu_rules.py``, ``bench/roi_rule_real_ct.py --flip``). The pipeline does not use it:
a region other than the model's own mask loses the real CT's vessels (docs/agents.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dmic_core.segmentation.base import Segmenter, as_hu_array
from dmic_core.volume import Volume

#: in-plane axes of a ``(Z, Y, X)`` volume: 2 mirrors left-right, 1 anterior-posterior
IN_PLANE_AXES = (1, 2)


def flip_averaged_probabilities(segmenter: Segmenter, volume: Volume | np.ndarray,
                                axes: Sequence[int] = (2,)) -> np.ndarray:
    """Mean of ``segmenter``'s probabilities of ``volume`` and of its mirror image along each of
    ``axes`` (each mirrored back), float32 ``(Z, Y, X)``.

    Raises:
        ValueError: an axis is not in-plane (mirroring along Z would reverse the slice order the
            2.5-D models read).
    """
    bad = [a for a in axes if a not in IN_PLANE_AXES]
    if bad:
        raise ValueError(f"flip axes must be in-plane {IN_PLANE_AXES}, got {bad}")
    hu = as_hu_array(volume)
    total = np.asarray(segmenter.probabilities(volume), dtype=np.float32).copy()
    for axis in axes:
        mirrored = np.ascontiguousarray(np.flip(hu, axis=axis))
        # on the same grid, so a model that resamples by the voxel spacing treats both alike
        image = volume.with_array(mirrored) if isinstance(volume, Volume) else mirrored
        total += np.flip(np.asarray(segmenter.probabilities(image), dtype=np.float32), axis=axis)
    return total / (1 + len(axes))
