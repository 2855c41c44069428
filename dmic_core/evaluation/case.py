"""A case: a volume to code and score, its optional label, the segmenter and the task reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmic_core.evaluation.accuracy import TaskReference, make_reference
from dmic_core.io import load_label, load_volume
from dmic_core.segmentation import Segmenter, load_segmenter
from dmic_core.volume import Volume


@dataclass
class Case:
    """A volume to code: the original, its optional label, the segmenter and the task reference
    (the original segmented once; every point of the case is scored against it)."""

    volume: Volume
    label: np.ndarray | None
    segmenter: Segmenter
    reference: TaskReference
    name: str = "case"


def load_case(image_path: str | Path, label_path: str | Path | None = None,
              segmenter: str | Segmenter = "builtin", slices: tuple[int, int] | None = None,
              roi_path: str | Path | None = None) -> Case:
    """Read a volume (and label), optionally keep frames ``slices``, and segment the original once.

    ``roi_path``: a mask (same grid) that replaces the segmentation of the original as the region
    the methods protect (what the sender's own mask or label says matters), e.g. where the
    built-in model is unlikely to be right on this scan; accuracy is still measured against the
    label when there is one, else against the model's segmentation of the original.
    """
    volume = load_volume(image_path)
    label = load_label(label_path, like=volume) if label_path is not None else None
    roi = load_label(roi_path, like=volume) if roi_path is not None else None
    if slices is not None and tuple(slices) != (0, volume.n_frames):
        volume = volume.slab(*slices)
        label = None if label is None else label[slices[0]:slices[1]]
        roi = None if roi is None else roi[slices[0]:slices[1]]
    seg = load_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
    reference = make_reference(seg, volume, label)
    if roi is not None:
        reference.roi = (np.asarray(roi) > 0).astype(np.uint8)
    return Case(volume, label, seg, reference, Path(image_path).name)
