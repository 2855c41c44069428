"""Task accuracy of a decoded volume: one definition for agents, sweeps, batches and the app.

The semantic distortion DMIC minimises is the drop in task accuracy caused by compression: the
mIoU (mean of vessel and background IoU) of the segmentation of the decoded volume against a
reference: the ground-truth label when there is one, otherwise the segmentation of the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmic_core.metrics.task import segmentation_scores
from dmic_core.segmentation import Segmenter
from dmic_core.volume import Volume


@dataclass
class TaskReference:
    """What decoded volumes are scored against, and the mask the codec protects.

    Attributes:
        reference: the mask accuracy is measured against (label, else segmentation of original).
        kind: ``"label"`` or ``"segmentation"``.
        roi: the diagnosis-relevant region the sender sees: the segmentation of the original
            (what agents and hand-crafted maps look at; a label is never needed to code).
        original_scores: accuracy of the segmentation of the *original* against the reference
            (1.0 by construction without a label): the ceiling compression can only lower.
    """

    reference: np.ndarray
    kind: str
    roi: np.ndarray
    original_scores: dict[str, float]


def make_reference(segmenter: Segmenter, original: Volume, label: np.ndarray | None = None) -> TaskReference:
    """Segment the original once and pick the reference for every later score."""
    roi = segmenter.segment(original)
    if label is not None:
        label = (np.asarray(label) > 0).astype(np.uint8)
        if label.shape != original.shape:
            raise ValueError(f"label shape {label.shape} does not match volume {original.shape}")
        return TaskReference(label, "label", roi, segmentation_scores(roi, label))
    return TaskReference(roi, "segmentation", roi, segmentation_scores(roi, roi))


def task_accuracy(segmenter: Segmenter, decoded: Volume, reference: TaskReference) -> dict[str, float]:
    """mIoU, vessel IoU, background IoU and Dice of the decoded volume's segmentation."""
    return segmentation_scores(segmenter.segment(decoded), reference.reference)


def accuracy_drop(scores: dict[str, float], reference: TaskReference) -> float:
    """Semantic distortion: mIoU lost relative to segmenting the uncompressed original."""
    return float(reference.original_scores["miou"] - scores["miou"])


__all__ = ["TaskReference", "make_reference", "task_accuracy", "accuracy_drop"]
