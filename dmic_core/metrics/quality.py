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
    exact = _integer_error_sums(ref, test, None)
    if exact is not None:
        return psnr_from_sse(float(exact["sse"]), exact["n"])
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
    exact = _integer_error_sums(ref, test, mask)
    if exact is not None:
        n, n_in = exact["n"], exact["n_in"]
        return {"mean_abs": float(exact["sae"]) / n if n else 0.0, "max_abs": float(exact["max"]) if n else 0.0,
                "mean_abs_in_mask": float(exact["sae_in"]) / n_in if n_in else None,
                "max_abs_in_mask": float(exact["max_in"]) if n_in else None}
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


#: Frames per slab of :func:`_integer_error_sums`.
_SLAB = 16
#: Below this, a float64 sum of integers is exact at every partial sum (2**53).
_EXACT_LIMIT = 2**53


def _integer_error_sums(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None) -> dict[str, int] | None:
    """Exact error sums of integer volumes, slab by slab, in int64 (no float64 copy of the volume).

    The same numbers as the float64 formulas: every sum of integers below 2**53 is exact in float64
    whatever the order, so ``float(int sum)`` equals numpy's float64 sum. ``None`` (use the float
    path) for non-integer input, other shapes, or sums that reach 2**53.
    """
    ref, test = np.asarray(ref), np.asarray(test)
    if (ref.shape != test.shape or ref.ndim < 1 or not np.issubdtype(ref.dtype, np.integer)
            or not np.issubdtype(test.dtype, np.integer) or ref.itemsize > 2 or test.itemsize > 2):
        return None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != ref.shape:
            return None
    sums = {"n": int(ref.size), "n_in": 0, "sse": 0, "sae": 0, "max": 0, "sae_in": 0, "max_in": 0}
    for start in range(0, ref.shape[0], _SLAB):
        err = np.abs(ref[start:start + _SLAB].astype(np.int32) - test[start:start + _SLAB].astype(np.int32))
        if err.size == 0:
            continue
        err64 = err.astype(np.int64)
        sums["sse"] += int(np.dot(err64.ravel(), err64.ravel()))
        sums["sae"] += int(err64.sum())
        sums["max"] = max(sums["max"], int(err.max()))
        if mask is not None:
            inside = err[mask[start:start + _SLAB] > 0]
            if inside.size:
                sums["n_in"] += int(inside.size)
                sums["sae_in"] += int(inside.sum(dtype=np.int64))
                sums["max_in"] = max(sums["max_in"], int(inside.max()))
    if max(sums["sse"], sums["sae"]) >= _EXACT_LIMIT:
        return None
    return sums


def _diff(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    ref, test = np.asarray(ref), np.asarray(test)
    if ref.shape != test.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {test.shape}")
    return ref.astype(np.float64) - test.astype(np.float64)


__all__ = ["PSNR_PEAK_HU", "RAW_BITS_PER_VOXEL", "hu_errors", "psnr_from_sse", "psnr_hu", "rate_stats"]
