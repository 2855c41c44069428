"""Slice-batched 2.5-D inference over a whole volume with bounded memory (shared by segmenters)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from dmic_core.segmentation.unet import pad_to_multiple, slice_stack


def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (default: the available cores), restoring the old count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n or available_cores())))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_slices(hu: np.ndarray, model: Callable[[torch.Tensor], torch.Tensor], *, in_slices: int,
               size_multiple: int, batch_size: int, prep: Callable[[torch.Tensor], torch.Tensor],
               emit: Callable[[int, int, torch.Tensor], None], zoom: float = 1.0,
               channels_last: bool = True) -> None:
    """Run ``model`` over every frame of ``hu`` ``(Z, Y, X)``, ``batch_size`` frames at a time.

    Each batch converts only the frames it needs (plus ``in_slices // 2`` neighbours either side)
    with ``prep`` (HU -> model input), optionally zooms in-plane by ``zoom`` (bilinear) so the
    model sees its training pixel size, pads to ``size_multiple``, and hands the centre logits
    ``(n, Y, X)`` back on the input grid to ``emit(start, stop, logits)``.
    """
    z, h, w = hu.shape
    half = in_slices // 2
    for start in range(0, z, batch_size):
        stop = min(z, start + batch_size)
        lo, hi = max(0, start - half), min(z, stop + half)
        chunk = np.ascontiguousarray(hu[lo:hi])
        frames = prep(torch.from_numpy(chunk if chunk.flags.writeable else chunk.copy()))
        x = slice_stack(frames, torch.arange(start, stop) - lo, in_slices)
        if zoom != 1.0:
            size = (max(1, round(h * zoom)), max(1, round(w * zoom)))
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x, (hh, ww) = pad_to_multiple(x, size_multiple)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        if out.ndim == 4:
            out = out[:, 0]
        out = out[:, :hh, :ww].float()
        if zoom != 1.0:
            out = nn.functional.interpolate(out[:, None], size=(h, w), mode="bilinear",
                                            align_corners=False)[:, 0]
        emit(start, stop, out)


def collect(hu_shape: tuple[int, int, int], kind: str, threshold: float,
            logits_are_probabilities: bool = False) -> tuple[np.ndarray, Callable[[int, int, torch.Tensor], None]]:
    """An output array and the ``emit`` callback that fills it (``kind`` 'mask' or 'prob')."""
    if kind == "mask":
        out = np.zeros(hu_shape, dtype=np.uint8)
        cut = threshold if logits_are_probabilities else float(np.log(threshold / (1.0 - threshold)))

        def emit(start: int, stop: int, logits: torch.Tensor) -> None:
            out[start:stop] = (logits >= cut).numpy().astype(np.uint8)
    elif kind == "prob":
        out = np.zeros(hu_shape, dtype=np.float32)

        def emit(start: int, stop: int, logits: torch.Tensor) -> None:
            p = logits if logits_are_probabilities else torch.sigmoid(logits)
            out[start:stop] = p.clamp(0.0, 1.0).numpy()
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return out, emit
