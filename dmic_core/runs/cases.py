"""Which volume a point codes (:class:`CaseSpec`) and the case of it kept per process.

Segmenting the original (the task reference) costs as much as a point, so every process that runs
points keeps the case of the last volume it saw (:func:`cached_case`): a worker of the point pool,
a job worker, a Ray worker. The key includes the inputs' modification times, so a replaced file is
read again.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Sequence

from dmic_core.errors import DmicInputError
from dmic_core.evaluation.case import Case, load_case


@dataclass(frozen=True)
class CaseSpec:
    """A volume to run points on.

    Attributes:
        image / label: input files (the label, when given, is the reference accuracy is measured on).
        segmenter: ``builtin``, ``gt`` (the label itself; needs ``label``) or a TorchScript file.
        slices: frames kept: ``(a, b)``, or ``"A:B"`` (either end optional, negatives from the end)
            resolved against the volume's frame count, so one setting fits volumes of any length.
        roi: a mask file that replaces the model's segmentation of the original as the region the
            methods protect (the user's own mask or label); ``None``: the model's.
    """

    image: str
    label: str | None = None
    segmenter: str = "builtin"
    slices: tuple[int, int] | str | None = None
    roi: str | None = None


_CASES: dict[tuple, Case] = {}


def cached_case(spec: CaseSpec) -> Case:
    """The :class:`~dmic_core.evaluation.case.Case` of ``spec``, loaded once per process (the last one kept)."""
    stamp = tuple(_mtime(p) for p in (spec.image, spec.label, spec.roi) if p)
    slices = resolve_slices(spec.slices, spec.image, stamp[0])
    key = (spec.image, spec.label, spec.segmenter, slices, spec.roi, stamp)
    if key not in _CASES:
        _CASES.clear()
        segmenter: Any = spec.segmenter
        if segmenter == "gt":
            from dmic_core.io import load_label, load_volume
            from dmic_core.segmentation import load_segmenter

            if not spec.label:
                raise DmicInputError("the 'gt' segmenter needs a label volume", spec.image)
            full = load_label(spec.label, like=load_volume(spec.image))
            segmenter = load_segmenter("gt", label=full if slices is None else full[slices[0]:slices[1]])
        _CASES[key] = load_case(spec.image, spec.label, segmenter, slices=slices, roi_path=spec.roi)
    return _CASES[key]


def _mtime(path: str) -> int:
    """Modification time of an input (cache key); a missing input is bad input, not a retry."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise DmicInputError("file not found", path) from None


def resolve_slices(value: str | Sequence[int] | None, volume: str, stamp: int | None = None) -> tuple[int, int] | None:
    """``[a, b]`` as given, or ``"A:B"`` resolved against this volume's frame count."""
    if not value:
        return None
    if isinstance(value, str):
        from dmic_core.volume import parse_slices

        return parse_slices(value, _n_frames(volume, _mtime(volume) if stamp is None else stamp), volume)
    return int(value[0]), int(value[1])


@functools.lru_cache(maxsize=64)
def _n_frames(volume: str, stamp: int) -> int:
    from dmic_core.io import load_volume

    return load_volume(volume).n_frames
