"""Per-CTU QP-offset maps from masks: which CTUs are foreground, and simple two-level maps.

One definition of "foreground CTU" for everyone (CLI, hand-crafted maps, agents): a CTU is
foreground in a frame when any mask voxel of that frame falls inside it.
"""

from __future__ import annotations

import numpy as np

from dmic_core.codecs.qp import CTU_SIZE, ctu_grid_shape


def ctu_mask_ratio(mask: np.ndarray) -> np.ndarray:
    """Fraction of mask voxels in each CTU, ``(frames, rows, cols)``; partial CTUs use their area."""
    mask = np.asarray(mask) > 0
    n, h, w = mask.shape
    rows, cols = ctu_grid_shape(h, w)
    padded = np.zeros((n, rows * CTU_SIZE, cols * CTU_SIZE), dtype=np.float32)
    padded[:, :h, :w] = mask
    area = np.zeros((rows * CTU_SIZE, cols * CTU_SIZE), dtype=np.float32)
    area[:h, :w] = 1.0
    sums = padded.reshape(n, rows, CTU_SIZE, cols, CTU_SIZE).sum(axis=(2, 4))
    areas = area.reshape(rows, CTU_SIZE, cols, CTU_SIZE).sum(axis=(1, 3))
    return sums / areas[None]


def foreground_ctus(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(frames, rows, cols)``: the CTU holds mask in that frame."""
    return ctu_mask_ratio(mask) > 0


def ctu_agreement(mask: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How a mask's foreground CTUs match a reference's (e.g. the segmenter's against the label).

    What the methods protect is the CTU, not the voxel: a CTU the mask marks without any reference
    in it is coded as foreground for nothing, and a reference CTU it misses is coded at the
    background offset. Returns the CTU fractions of each (``mask_ctus``, ``reference_ctus``), the
    share of the reference's CTUs the mask misses (``reference_ctus_missed``) and the share of the
    mask's CTUs without reference (``mask_ctus_without_reference``).
    """
    ours, theirs = foreground_ctus(mask), foreground_ctus(reference)
    if ours.shape != theirs.shape:
        raise ValueError(f"mask {np.shape(mask)} and reference {np.shape(reference)} differ in shape")
    return {"mask_ctus": float(ours.mean()), "reference_ctus": float(theirs.mean()),
            "reference_ctus_missed": float((theirs & ~ours).sum() / max(1, theirs.sum())),
            "mask_ctus_without_reference": float((ours & ~theirs).sum() / max(1, ours.sum()))}


def ctu_peak(values: np.ndarray) -> np.ndarray:
    """Largest value in each CTU, ``(frames, rows, cols)`` (the padding of partial CTUs counts as 0)."""
    values = np.asarray(values, dtype=np.float32)
    n, h, w = values.shape
    rows, cols = ctu_grid_shape(h, w)
    padded = np.zeros((n, rows * CTU_SIZE, cols * CTU_SIZE), dtype=np.float32)
    padded[:, :h, :w] = values
    return padded.reshape(n, rows, CTU_SIZE, cols, CTU_SIZE).max(axis=(2, 4))


def gate_ctus_by_confidence(mask: np.ndarray, probabilities: np.ndarray, gate: float) -> np.ndarray:
    """``mask`` kept only in the CTUs (per frame) whose peak vessel probability reaches ``gate``.

    A segmenter's false positives tend to be faint: on validation phantoms a third of the mask's
    CTUs without label peak below 0.9, against under 1% of those with label (bench/roi_gate.py).
    """
    if np.shape(mask) != np.shape(probabilities):
        raise ValueError(f"mask {np.shape(mask)} and probabilities {np.shape(probabilities)} differ in shape")
    keep = np.repeat(np.repeat(ctu_peak(probabilities) >= gate, CTU_SIZE, axis=1), CTU_SIZE, axis=2)
    h, w = np.shape(mask)[1:]
    return ((np.asarray(mask) > 0) & keep[:, :h, :w]).astype(np.uint8)


def drop_small_components(mask: np.ndarray, min_voxels: int, keep_ends: bool = False) -> np.ndarray:
    """``mask`` without its 3-D connected components (26-connected) of fewer than ``min_voxels`` voxels.

    The segmenter's false positives are mostly small isolated blobs, while the coronary tree is a
    few large connected components: on six validation slabs, dropping components under 50 voxels
    cut the share of the mask's CTUs without label from 16% to 10% and lost no CTU of the label.
    An agents checkpoint can apply it to the mask it is given (:meth:`DMICAgents.drop_small_regions`).
    The shipped default does not: the rule won on the validation phantoms but dropped the real CT's
    vessel fragments (docs/agents.md), so the pipeline's mask is the model's own.

    ``keep_ends``: keep every component that touches the first or last frame. Such a component may
    go on beyond the frames at hand, so its size there says nothing: on a 33-frame slab, dropping
    components under 500 voxels without this missed 11% of the label's CTUs (45% on the worst
    slab) against 5% when the rule runs on the whole volume; with it, 4.9% (``bench/roi_ctu_rules.py``).
    """
    from scipy import ndimage

    mask = np.asarray(mask) > 0
    if min_voxels <= 1 or not mask.any():
        return mask.astype(np.uint8)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
    keep = sizes >= min_voxels
    if keep_ends:
        keep[np.unique(labels[0])] = True
        keep[np.unique(labels[-1])] = True
    keep[0] = False
    return keep[labels].astype(np.uint8)


def mask_ctu_dqp(mask: np.ndarray, fg_dqp: int, bg_dqp: int) -> np.ndarray:
    """Two-level map: ``fg_dqp`` on foreground CTUs, ``bg_dqp`` elsewhere."""
    return np.where(foreground_ctus(mask), np.int32(fg_dqp), np.int32(bg_dqp)).astype(np.int32)
