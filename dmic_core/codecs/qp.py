"""QP facts, in one place: the frame-level QP structure and what a QP means in Hounsfield units.

Everything user-facing (agents, sweeps, the app, ``result.json``) speaks *paper QPs*: QPs of
8-bit video whose 256 levels span a 1024-HU CCTA window (4 HU per level), as in the DMIC paper.
A codec is driven with *coded QPs*: the paper QP shifted so that the quantisation step, measured
in HU, is the same at the coded bit depth and window.

HEVC scales its quantiser with the bit depth (the step for a given QP is a fixed fraction of the
sample range: 12-bit video at QP q has the same step *relative to its range* as 8-bit video at q).
So the step in HU depends on the window width alone, not on the bit depth:
``step_HU(QP', W) = step_HU(QP, 1024) <=> QP' = QP + 6 log2(1024 / W)``. Over the full 4096-HU
range that is ``QP - 12`` at 8, 10 and 12 bits alike; over a 1024-HU window it is ``QP``.
(Measured: tests/test_qp_meaning.py and docs/codec.md encode real CT at 8/10/12 bits.)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Reference HU per 8-bit level behind paper QPs: a 1024-HU window over 256 levels.
REFERENCE_WINDOW_HU = 1024.0
REFERENCE_HU_PER_LEVEL = REFERENCE_WINDOW_HU / 256.0

#: HEVC's QP range for the codecs we drive (x265 and HM clip to 0..51 for every bit depth here).
CODEC_QP_MIN = 0
CODEC_QP_MAX = 51

#: Coding tree unit size: one QP (offset) per 64x64 CTU.
CTU_SIZE = 64

#: GOP length of the low-delay-P structure (HM ``encoder_lowdelay_P_main.cfg`` and the paper).
GOP_SIZE = 8

#: Paper's frame-level action range for QP_I and the P-frame delta per QP_I band.
PAPER_QP_I_MIN = 14
PAPER_QP_I_MAX = 37


def qp_shift(bit_depth: int, window_hu: float) -> float:
    """QP offset that gives a paper QP the same HU step when ``window_hu`` HU span the samples.

    ``QP' = QP + 6 log2(1024 / window_hu)``: -12 for the full 4096-HU range, 0 for a 1024-HU
    window. ``bit_depth`` is validated but cancels out (HEVC's quantiser scales with it).
    """
    if bit_depth not in (8, 10, 12):
        raise ValueError(f"bit depth must be 8, 10 or 12, got {bit_depth}")
    if window_hu <= 0:
        raise ValueError(f"window width must be positive, got {window_hu}")
    return 6.0 * math.log2(REFERENCE_WINDOW_HU / float(window_hu))


def paper_to_coded_qp(paper_qp: np.ndarray | Sequence[float] | float, bit_depth: int,
                      window_hu: float) -> np.ndarray:
    """Coded QPs (int, clipped to the codec range) for paper QPs."""
    coded = np.rint(np.asarray(paper_qp, dtype=np.float64) + qp_shift(bit_depth, window_hu))
    return np.clip(coded, CODEC_QP_MIN, CODEC_QP_MAX).astype(np.int32)


def coded_to_paper_qp(coded_qp: np.ndarray | Sequence[float] | float, bit_depth: int,
                      window_hu: float) -> np.ndarray:
    """Paper QPs (float) for coded QPs: the inverse of :func:`paper_to_coded_qp` before rounding."""
    return np.asarray(coded_qp, dtype=np.float64) - qp_shift(bit_depth, window_hu)


def p_frame_delta(qp_i: int) -> int:
    """The paper's Delta QP_P: 6, 7, 8 for QP_I in 14-21, 22-29, 30-37 (extended flat outside)."""
    if qp_i <= 21:
        return 6
    if qp_i <= 29:
        return 7
    return 8


def dmic_frame_qps(qp_i: int, n_frames: int) -> np.ndarray:
    """Paper QPs of every frame under the paper's low-delay-P rule.

    Frame 0 (IDR) gets ``QP_I``; then the GOP-8 loop ``QP_I + {d, d-1, d, d-1, d, d-1, d, 2}``
    with ``d = p_frame_delta(QP_I)``. At QP_I 21 this reproduces HM's LDP pattern.
    """
    if n_frames < 1:
        raise ValueError("need at least one frame")
    d = p_frame_delta(int(qp_i))
    loop = np.array([d, d - 1, d, d - 1, d, d - 1, d, 2], dtype=np.int32)
    qps = np.empty(n_frames, dtype=np.int32)
    qps[0] = qp_i
    for k in range(1, n_frames):
        qps[k] = qp_i + loop[(k - 1) % GOP_SIZE]
    return qps


#: HM encoder_lowdelay_P_main.cfg: per-GOP-position QPoffset and the QP offset model (pos 1-7).
_HM_LDP_QP_OFFSET = (5, 4, 5, 4, 5, 4, 5, 1)
_HM_LDP_MODEL = ((-6.5, 0.2590),) * 7 + ((0.0, 0.0),)
_HM_LDP_INTRA_QP_OFFSET = -1


def hm_anchor_frame_qps(base_qp: int, n_frames: int) -> np.ndarray:
    """Paper QPs of every frame of HM's ``encoder_lowdelay_P_main.cfg`` at ``--QP base_qp``.

    The constant-QP HEVC anchor of the paper: IDR at ``base - 1``, then per GOP position
    ``base + QPoffset`` plus HM's offset model ``floor(clip(0, 3, qp*scale + offset + 0.5))``.
    Base 22 gives I 21, P 27 26 27 26 27 26 27 23; base 32 gives I 31, P 40 39 40 39 40 39 40 33.
    """
    if n_frames < 1:
        raise ValueError("need at least one frame")
    qps = np.empty(n_frames, dtype=np.int32)
    qps[0] = base_qp + _HM_LDP_INTRA_QP_OFFSET
    for k in range(1, n_frames):
        pos = (k - 1) % GOP_SIZE
        qp = base_qp + _HM_LDP_QP_OFFSET[pos]
        model_offset, model_scale = _HM_LDP_MODEL[pos]
        if model_offset != 0.0 or model_scale != 0.0:
            dqp = qp * model_scale + model_offset + 0.5
            qp += int(math.floor(min(3.0, max(0.0, dqp))))
        qps[k] = qp
    return qps


def ctu_grid_shape(height: int, width: int) -> tuple[int, int]:
    """CTU rows and columns of a ``height`` x ``width`` frame (partial CTUs count)."""
    return (-(-height // CTU_SIZE), -(-width // CTU_SIZE))


def pad_ctu_grid(ctu_offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """CTU offsets ``(F, rows, cols)`` extended to the CTU grid of a padded ``height`` x ``width``.

    Padded frames replicate their edge, so an added CTU row or column takes its neighbour's offset.
    """
    rows, cols = ctu_grid_shape(height, width)
    extra_rows, extra_cols = rows - ctu_offsets.shape[1], cols - ctu_offsets.shape[2]
    if extra_rows < 0 or extra_cols < 0:
        raise ValueError(f"CTU grid {ctu_offsets.shape[1:]} is larger than that of {height}x{width}")
    return np.pad(ctu_offsets, ((0, 0), (0, extra_rows), (0, extra_cols)), mode="edge")


def absolute_qp_map(frame_qps: np.ndarray, ctu_offsets: np.ndarray | None, height: int,
                    width: int) -> np.ndarray:
    """Absolute QP of every CTU ``(frames, rows, cols)``: frame QP plus its CTU offset."""
    rows, cols = ctu_grid_shape(height, width)
    base = np.asarray(frame_qps, dtype=np.int32)[:, None, None]
    if ctu_offsets is None:
        return np.broadcast_to(base, (len(frame_qps), rows, cols)).copy()
    ctu_offsets = np.asarray(ctu_offsets)
    if ctu_offsets.shape != (len(frame_qps), rows, cols):
        raise ValueError(f"CTU offset map has shape {ctu_offsets.shape}, expected "
                         f"{(len(frame_qps), rows, cols)}")
    return base + ctu_offsets.astype(np.int32)
