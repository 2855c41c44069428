"""Segmentation agreement: IoU, Dice and the paper's mIoU (mean of vessel and background IoU).

Masks are binary: any value > 0 is vessel. Two empty vessel masks agree perfectly (IoU = Dice =
1): a decoded volume that, like the reference, shows no vessel has lost nothing.
"""

from __future__ import annotations

import numpy as np


def _binary_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")
    return pred > 0, ref > 0


def _iou(p: np.ndarray, r: np.ndarray) -> float:
    union = int(np.count_nonzero(p | r))
    return 1.0 if union == 0 else int(np.count_nonzero(p & r)) / union


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Vessel intersection over union (1.0 when both masks are empty)."""
    return _iou(*_binary_pair(pred, ref))


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P&R| / (|P|+|R|)`` (1.0 when both masks are empty)."""
    p, r = _binary_pair(pred, ref)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(r))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(p & r)) / total


def miou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean of vessel IoU and background IoU (the paper's task accuracy)."""
    return segmentation_scores(pred, ref)["miou"]


def segmentation_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``miou``, ``vessel_iou``, ``background_iou`` and ``dice`` of ``pred`` against ``ref``."""
    p, r = _binary_pair(pred, ref)
    vessel = _iou(p, r)
    background = _iou(~p, ~r)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(r))
    return {
        "miou": 0.5 * (vessel + background),
        "vessel_iou": vessel,
        "background_iou": background,
        "dice": 1.0 if total == 0 else 2.0 * int(np.count_nonzero(p & r)) / total,
    }


__all__ = ["dice", "iou", "miou", "segmentation_scores"]
