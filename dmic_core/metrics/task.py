"""Segmentation agreement: IoU, Dice and the paper's mIoU (mean of vessel and background IoU).

Masks are binary: any value > 0 is vessel. Everything is computed from four counts (true
positives, predicted positives, reference positives, voxels) by :func:`scores_from_counts`, the
one implementation: the voxel masks here, the agents' surrogate (which sums counts per CTU), the
segmenter's training evaluation and the benches all call it.

Empty-mask convention: when neither mask has a vessel voxel the vessel IoU and Dice are **1.0**
(not NaN, not 0): a decoded volume that, like the reference, shows no vessel has lost nothing,
and a rate curve must not get a hole or a penalty there. The same holds for the background IoU
of two all-vessel masks. So mIoU is always defined, in [0, 1].
"""

from __future__ import annotations

import numpy as np


def _binary_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {ref.shape}")
    return pred > 0, ref > 0


def scores_from_counts(tp, pred_count, ref_count, n_voxels) -> dict[str, float | np.ndarray]:
    """``miou``, ``vessel_iou``, ``background_iou`` and ``dice`` from voxel counts.

    Args:
        tp: true positives ``|P & R|``; pred_count: ``|P|``; ref_count: ``|R|``; n_voxels: all
            voxels. Scalars give floats; arrays (e.g. one count per frame) give arrays.
    """
    tp, pc, rc, n = (np.asarray(v, dtype=np.float64) for v in (tp, pred_count, ref_count, n_voxels))
    union = pc + rc - tp
    bg_union = n - tp                     # |~P | ~R| = n - |P & R|
    total = pc + rc
    with np.errstate(invalid="ignore", divide="ignore"):
        vessel = np.where(union > 0, tp / union, 1.0)
        background = np.where(bg_union > 0, (n - union) / bg_union, 1.0)
        dice = np.where(total > 0, 2.0 * tp / total, 1.0)
    scores = {"miou": 0.5 * (vessel + background), "vessel_iou": vessel, "background_iou": background,
              "dice": dice}
    if np.ndim(scores["miou"]) == 0:
        return {k: float(v) for k, v in scores.items()}
    return scores


def segmentation_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """``miou``, ``vessel_iou``, ``background_iou`` and ``dice`` of ``pred`` against ``ref``."""
    p, r = _binary_pair(pred, ref)
    return scores_from_counts(np.count_nonzero(p & r), np.count_nonzero(p), np.count_nonzero(r), p.size)


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Vessel intersection over union (1.0 when both masks are empty)."""
    return segmentation_scores(pred, ref)["vessel_iou"]


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2|P&R| / (|P|+|R|)`` (1.0 when both masks are empty)."""
    return segmentation_scores(pred, ref)["dice"]


def miou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean of vessel IoU and background IoU (the paper's task accuracy)."""
    return segmentation_scores(pred, ref)["miou"]


def per_frame_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`segmentation_scores` of every frame ``(F, ...)``: arrays of length ``F``."""
    p, r = _binary_pair(pred, ref)
    p, r = p.reshape(p.shape[0], -1), r.reshape(r.shape[0], -1)
    return scores_from_counts(np.count_nonzero(p & r, axis=1), np.count_nonzero(p, axis=1),
                              np.count_nonzero(r, axis=1), np.full(p.shape[0], p.shape[1]))


__all__ = ["dice", "iou", "miou", "per_frame_scores", "scores_from_counts", "segmentation_scores"]
