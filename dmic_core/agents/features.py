"""States of the two agents, built from HU slices and their task masks (``S`` and ``M(S)``).

Both states are stacks of small image planes, computed with a few tensor reductions so that a
33 x 512 x 512 clip turns into both states in a few tens of milliseconds:

Frame agent (one state per clip): every frame downsampled 8x to 64 x 64, channels
  0 CCTA-window intensity (``FEATURE_CCTA_WINDOW``), 1 full-range intensity (what the codec sees), 2 local HU standard
  deviation (texture, drives intra rate), 3 mask fraction, 4 mean |difference to the previous
  frame| (drives inter rate).
CTU agent (one state per CTU and frame): the CTU's 64 x 64 pixels downsampled 4x to 16 x 16,
  channels 0-4 as above at that scale, plus constant planes 5 frame QP ((QP - 30) / 10) and
  6 intra-frame flag.

The scalar context of both agents is lambda, fed to the FC layer as ``log1p(lambda)/log1p(100)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dmic_core.codecs.qp import CTU_SIZE, ctu_grid_shape
from dmic_core.defaults import FEATURE_CCTA_WINDOW, FULL_WINDOW
#: HU scales of the texture and temporal-difference channels.
STD_SCALE = 200.0
DIFF_SCALE = 100.0

FRAME_SIZE = 64
CTU_THUMB = 16
FRAME_CHANNELS = 5
CTU_CHANNELS = 7
LAMBDA_MAX = 100.0


class CTUObs(NamedTuple):
    """CTU-agent state of ``N`` CTUs: planes ``(N, 7, 16, 16)``, context ``(N,)``, foreground ``(N,)``."""

    planes: torch.Tensor
    context: torch.Tensor
    foreground: torch.Tensor


def lambda_context(lam: float | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Normalised lambda: ``log1p(lambda) / log1p(100)`` (0 at 0, 1 at 100)."""
    t = torch.as_tensor(lam, dtype=torch.float32)
    return torch.log1p(t.clamp(min=0.0)) / float(np.log1p(LAMBDA_MAX))


def _pad_to_ctus(x: torch.Tensor) -> torch.Tensor:
    """Pad ``(F, H, W)`` with edge values to whole CTUs."""
    n, h, w = x.shape
    rows, cols = ctu_grid_shape(h, w)
    ph, pw = rows * CTU_SIZE - h, cols * CTU_SIZE - w
    if ph or pw:
        x = F.pad(x[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
    return x


#: Frames per slab of :func:`_moments` (bounds its float32 temporaries to a slab of the volume).
MOMENT_SLAB = 16


def _moments(hu: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Block means at 1/4 resolution of HU, HU^2, |frame difference| and mask: 4 x ``(F, 1, h, w)``.

    Computed ``MOMENT_SLAB`` frames at a time (each slab with the frame before it for the
    difference): the same values as over the whole clip, without float32 copies of the volume.
    """
    n = hu.shape[0]
    if n <= MOMENT_SLAB:
        return _moments_of(hu, mask)
    parts = []
    for start in range(0, n, MOMENT_SLAB):
        lo = max(0, start - 1)
        stop = min(n, start + MOMENT_SLAB)
        mean, sq, diff, mfrac = _moments_of(hu[lo:stop], mask[lo:stop])
        skip = start - lo  # the frame before the slab only served the difference
        parts.append((mean[skip:], sq[skip:], diff[skip:], mfrac[skip:]))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(4))


def _moments_of(hu: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, ...]:
    x = _pad_to_ctus(torch.from_numpy(np.ascontiguousarray(hu)).to(torch.float32))[:, None]
    m = _pad_to_ctus(torch.from_numpy(np.ascontiguousarray(mask > 0)).to(torch.float32))[:, None]
    k = CTU_SIZE // CTU_THUMB
    mean = F.avg_pool2d(x, k)
    sq = F.avg_pool2d(x.square(), k)
    diff = torch.zeros_like(mean)
    if x.shape[0] > 1:
        diff[1:] = F.avg_pool2d((x[1:] - x[:-1]).abs_(), k)
    return mean, sq, diff, F.avg_pool2d(m, k)


def _planes_from(mean: torch.Tensor, sq: torch.Tensor, diff: torch.Tensor,
                 mfrac: torch.Tensor) -> torch.Tensor:
    """Channels 0-4 from block moments: ``(F, 5, h, w)``."""
    std = (sq - mean * mean).clamp_(min=0.0).sqrt_()
    lo, hi = FEATURE_CCTA_WINDOW
    ccta = ((mean - lo) / (hi - lo)).clamp_(0.0, 1.0)
    lo, hi = FULL_WINDOW
    full = ((mean - lo) / (hi - lo)).clamp_(0.0, 1.0)
    return torch.cat([ccta, full, (std / STD_SCALE).clamp_(max=4.0), mfrac,
                      (diff / DIFF_SCALE).clamp_(max=4.0)], dim=1)


def clip_state(hu: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both agents' planes of one clip from one pass over the voxels.

    Returns:
        frame planes ``(F, 5, 64, 64)`` and CTU base planes ``(F, rows, cols, 5, 16, 16)``.
    """
    n, h, w = hu.shape
    rows, cols = ctu_grid_shape(h, w)
    moments = _moments(hu, mask)
    t = CTU_THUMB
    p = _planes_from(*moments)
    base = p.reshape(n, FRAME_CHANNELS, rows, t, cols, t).permute(0, 2, 4, 1, 3, 5).contiguous()
    # frame planes: 2x coarser block moments (8x8 pixel blocks), resized to 64 x 64 if needed
    m2 = [F.avg_pool2d(m, 2) if min(m.shape[-2:]) >= 2 * FRAME_SIZE else m for m in moments]
    fp = _planes_from(*m2)
    if fp.shape[-2:] != (FRAME_SIZE, FRAME_SIZE):
        fp = F.interpolate(fp, size=(FRAME_SIZE, FRAME_SIZE), mode="area" if fp.shape[-1] > FRAME_SIZE
                           else "bilinear", **({} if fp.shape[-1] > FRAME_SIZE else {"align_corners": False}))
    return fp, base


def ctu_base_planes(hu: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """Channels 0-4 of every CTU: ``(F, rows, cols, 5, 16, 16)``; independent of the frame QPs."""
    return clip_state(hu, mask)[1]


def ctu_observation(base: torch.Tensor, frame_qps: np.ndarray, lam: float | np.ndarray) -> CTUObs:
    """CTU-agent state of every CTU of one clip, flattened frame-major to ``N = F * rows * cols``.

    Args:
        base: :func:`ctu_base_planes` of the clip.
        frame_qps: paper QP of every frame (from the frame agent's QP_I).
        lam: lambda (scalar, or one per frame).
    """
    n, rows, cols = base.shape[:3]
    t = CTU_THUMB
    qps = torch.as_tensor(np.asarray(frame_qps, dtype=np.float32))
    qp_plane = ((qps - 30.0) / 10.0).view(n, 1, 1, 1, 1, 1).expand(n, rows, cols, 1, t, t)
    intra = torch.zeros(n, dtype=torch.float32)
    intra[0] = 1.0
    intra_plane = intra.view(n, 1, 1, 1, 1, 1).expand(n, rows, cols, 1, t, t)
    planes = torch.cat([base, qp_plane, intra_plane], dim=3).reshape(n * rows * cols, CTU_CHANNELS, t, t)
    fg = base[:, :, :, 3].reshape(n * rows * cols, -1).amax(dim=1) > 0
    lam_t = torch.as_tensor(np.asarray(lam, dtype=np.float32))
    if lam_t.ndim == 0:
        ctx = lambda_context(lam_t).expand(n * rows * cols)
    else:
        ctx = lambda_context(lam_t).view(n, 1, 1).expand(n, rows, cols).reshape(-1)
    return CTUObs(planes, ctx.contiguous(), fg)
