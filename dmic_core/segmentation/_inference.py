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


def fine_positions(n_in: int, factor: float) -> tuple[int, float]:
    """Frames after resampling ``n_in`` frames by ``factor`` along z, end frames kept in place.

    Returns ``(m, step)``: fine frame ``j`` lies at input position ``j * step`` (``step`` =
    ``(n_in - 1) / (m - 1)``, about ``1 / factor``).
    """
    if n_in < 2:
        return n_in, 1.0
    m = max(2, int(round((n_in - 1) * factor)) + 1)
    return m, (n_in - 1) / (m - 1)


def run_volume(hu: np.ndarray, model: Callable[[torch.Tensor], torch.Tensor], *, in_slices: int,
               size_multiple: int, batch_size: int, prep: Callable[[torch.Tensor], torch.Tensor],
               emit: Callable[[int, int, torch.Tensor], None], zoom: float = 1.0, z_factor: float = 1.0,
               channels_last: bool = True) -> None:
    """:func:`run_slices`, with the frames first resampled along z by ``z_factor`` (linear).

    The model then sees adjacent frames as far apart as in training whatever the input's slice
    spacing. Work goes in blocks of ``batch_size`` input frames: their fine frames (plus
    ``in_slices // 2`` context frames either side) are interpolated from the input, segmented,
    and the logits are interpolated back to the input frames, so memory stays bounded and every
    output lies exactly on the input grid.
    """
    z = hu.shape[0]
    if z_factor == 1.0 or z < 2:
        run_slices(hu, model, in_slices=in_slices, size_multiple=size_multiple, batch_size=batch_size,
                   prep=prep, emit=emit, zoom=zoom, channels_last=channels_last)
        return
    m, step = fine_positions(z, z_factor)
    half = in_slices // 2
    for i0 in range(0, z, batch_size):
        i1 = min(z, i0 + batch_size)
        j0, j1 = int(np.floor(i0 / step)), min(m - 1, int(np.ceil((i1 - 1) / step)))
        jl, jh = max(0, j0 - half), min(m - 1, j1 + half)
        pos = np.arange(jl, jh + 1) * step
        lo = np.minimum(np.floor(pos).astype(np.int64), z - 1)
        hi = np.minimum(lo + 1, z - 1)
        w = (pos - lo).astype(np.float32)[:, None, None]
        fine = np.asarray(hu[lo], np.float32) * (1.0 - w) + np.asarray(hu[hi], np.float32) * w
        logits = torch.empty((jh - jl + 1,) + hu.shape[1:], dtype=torch.float32)

        def keep(a: int, b: int, out: torch.Tensor) -> None:
            logits[a:b] = out

        run_slices(fine, model, in_slices=in_slices, size_multiple=size_multiple, batch_size=batch_size,
                   prep=prep, emit=keep, zoom=zoom, channels_last=channels_last)
        back = np.arange(i0, i1) / step - jl  # input frames in the block's fine coordinates
        bl = np.clip(np.floor(back).astype(np.int64), 0, len(logits) - 1)
        bh = np.minimum(bl + 1, len(logits) - 1)
        bw = torch.from_numpy((back - bl).astype(np.float32)).view(-1, 1, 1)
        emit(i0, i1, logits[bl] * (1.0 - bw) + logits[bh] * bw)


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
