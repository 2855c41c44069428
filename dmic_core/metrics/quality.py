"""Rate and HU fidelity of a decoded volume against its original.

PSNR uses :data:`dmic_core.defaults.PSNR_PEAK_HU` as its peak: ``HU_MAX - HU_MIN = 4095`` HU, the
span the 12-bit mapping keeps whole, so PSNRs are comparable across bit depths and windows. Errors are
measured on the HU values as given: voxels the mapping had to clip count as loss, because they
are lost.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dmic_core.defaults import PSNR_PEAK_HU
#: Bits per voxel of the uncompressed reference the compression ratio is taken against.
RAW_BITS_PER_VOXEL = 16


def rate_stats(total_bits: int, shape: Sequence[int]) -> dict[str, float]:
    """``bits``, ``bytes``, ``bpp`` (bits per voxel) and ``compression_ratio`` vs raw 16-bit voxels."""
    voxels = int(np.prod([int(s) for s in shape], dtype=np.int64))
    if voxels <= 0:
        raise ValueError(f"shape {tuple(shape)} has no voxels")
    if total_bits < 0:
        raise ValueError(f"total_bits must be >= 0, got {total_bits}")
    bits = int(total_bits)
    return {
        "bits": bits,
        "bytes": bits / 8.0,
        "bpp": bits / voxels,
        "compression_ratio": (RAW_BITS_PER_VOXEL * voxels / bits) if bits else math.inf,
    }


def psnr_hu(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB with peak 4095 HU; ``inf`` for identical volumes."""
    diff = _diff(ref, test)
    return psnr_from_sse(float(np.sum(diff * diff)), diff.size)


def psnr_from_sse(sse: float, n: int) -> float:
    """PSNR in dB of ``n`` voxels with summed squared HU error ``sse`` (peak 4095 HU; ``inf`` at 0).

    The one PSNR formula: :func:`psnr_hu` and the agents' environment and surrogate (which only
    keep summed errors per CTU) both use it.
    """
    mse = sse / n if n > 0 else 0.0
    if mse <= 0.0:
        return math.inf
    return 10.0 * math.log10(PSNR_PEAK_HU**2 / mse)


def hu_errors(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float | None]:
    """Mean and max absolute HU error, overall and inside ``mask`` (``None`` without a mask or if empty)."""
    err = np.abs(_diff(ref, test))
    out: dict[str, float | None] = {
        "mean_abs": float(err.mean()) if err.size else 0.0,
        "max_abs": float(err.max()) if err.size else 0.0,
        "mean_abs_in_mask": None,
        "max_abs_in_mask": None,
    }
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != err.shape:
            raise ValueError(f"mask shape {mask.shape} does not match volume {err.shape}")
        inside = err[mask > 0]
        if inside.size:
            out["mean_abs_in_mask"] = float(inside.mean())
            out["max_abs_in_mask"] = float(inside.max())
    return out


def _diff(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    ref, test = np.asarray(ref), np.asarray(test)
    if ref.shape != test.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {test.shape}")
    return ref.astype(np.float64) - test.astype(np.float64)


__all__ = ["PSNR_PEAK_HU", "RAW_BITS_PER_VOXEL", "hu_errors", "psnr_from_sse", "psnr_hu", "rate_stats"]
