"""Bjontegaard deltas between two rate-quality curves, never raising on bad curves.

Wraps the ``bjontegaard`` package with piecewise-cubic Hermite (pchip) interpolation, which,
unlike the classic cubic fit, cannot overshoot between points. BD needs each curve to be a
function in both directions: quality must rise strictly with rate. Curves that are too short,
non-monotonic or do not overlap give ``NaN`` with a stated reason instead of an exception or a
meaningless number.

Measured task-accuracy curves (mIoU) saturate and wobble by ~1e-4 at high rates, so they are
rarely strictly monotonic; callers that want a BD number anyway reduce each curve to its
:func:`upper_envelope` first (a point beaten by a cheaper one is an operating point nobody would
choose) and say so next to the result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Fewest points per curve: the usual BD practice of four rate points (pchip itself needs two).
MIN_POINTS = 4
#: Interpolation method passed to ``bjontegaard``.
METHOD = "pchip"

ArrayLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class BDResult:
    """A BD value and, when it is ``NaN``, why.

    Attributes:
        value: BD-rate in percent (negative = test saves bits) or BD-quality in the quality's
            units (positive = test is better); ``NaN`` when undefined.
        reason: why ``value`` is ``NaN``; ``None`` when it is defined.
        overlap: fraction of the joint range (quality for BD-rate, log-rate for BD-quality) that
            both curves cover; small overlaps mean the number rests on extrapolated ends.
    """

    value: float
    reason: str | None = None
    overlap: float | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def bd_rate(anchor_rates: ArrayLike, anchor_quality: ArrayLike, test_rates: ArrayLike,
            test_quality: ArrayLike, min_overlap: float = 0.0) -> BDResult:
    """Average rate difference of test vs anchor at equal quality, in percent.

    The average runs over the quality range both curves cover, never beyond it. With
    ``min_overlap`` > 0, a result whose shared range is a smaller fraction of the joint range is
    ``NaN`` with the reason (too little overlap means the number speaks for a sliver of the curves).
    """
    return _bd(anchor_rates, anchor_quality, test_rates, test_quality, kind="rate",
               min_overlap=min_overlap)


def bd_quality(anchor_rates: ArrayLike, anchor_quality: ArrayLike, test_rates: ArrayLike,
               test_quality: ArrayLike, min_overlap: float = 0.0) -> BDResult:
    """Average quality difference of test vs anchor at equal rate (BD-PSNR for PSNR; for mIoU in
    [0, 1] the caller multiplies by 100 to report percentage points); ``min_overlap`` as in
    :func:`bd_rate`, over the log-rate range."""
    return _bd(anchor_rates, anchor_quality, test_rates, test_quality, kind="quality",
               min_overlap=min_overlap)


def upper_envelope(rates: ArrayLike, quality: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The Pareto front of a curve, sorted by rate: points whose quality beats every cheaper point.

    A point is dropped when some point with lower or equal rate has higher or equal quality, so
    the result rises strictly in both rate and quality (what BD needs). Non-finite points are
    dropped too.
    """
    r, q = np.asarray(rates, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"rates and quality must be 1-D of one length, got {r.shape} and {q.shape}")
    keep = np.isfinite(r) & np.isfinite(q)
    r, q = r[keep], q[keep]
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    out_r, out_q = [], []
    for rate, qual in zip(r[order], q[order]):
        if out_q and (qual <= out_q[-1] or rate == out_r[-1]):
            continue
        out_r.append(rate)
        out_q.append(qual)
    return np.asarray(out_r), np.asarray(out_q)


def _bd(ar: ArrayLike, aq: ArrayLike, tr: ArrayLike, tq: ArrayLike, kind: str,
        min_overlap: float = 0.0) -> BDResult:
    curves = {}
    for name, rates, quality in (("anchor", ar, aq), ("test", tr, tq)):
        checked = _check_curve(name, rates, quality)
        if isinstance(checked, str):
            return BDResult(float("nan"), checked)
        curves[name] = checked
    (a_r, a_q), (t_r, t_q) = curves["anchor"], curves["test"]
    if kind == "rate":
        a_axis, t_axis, axis_name = a_q, t_q, "quality"
    else:
        a_axis, t_axis, axis_name = np.log10(a_r), np.log10(t_r), "rate"
    low, high = max(a_axis.min(), t_axis.min()), min(a_axis.max(), t_axis.max())
    total = max(a_axis.max(), t_axis.max()) - min(a_axis.min(), t_axis.min())
    if high <= low:
        return BDResult(float("nan"), f"{axis_name} ranges of anchor and test do not overlap", 0.0)
    overlap = float((high - low) / total)
    if overlap < min_overlap:
        return BDResult(float("nan"), f"{axis_name} ranges overlap by {overlap:.0%} of their joint "
                                      f"range, less than the required {min_overlap:.0%}", overlap)

    import bjontegaard  # imports matplotlib: only when a BD is actually computed

    fn = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(a_r, a_q, t_r, t_q, method=METHOD, require_matching_points=False,
                             min_overlap=0.0))
    except (ValueError, AssertionError, ZeroDivisionError, FloatingPointError) as exc:
        return BDResult(float("nan"), f"BD computation failed: {exc}", overlap)
    if not np.isfinite(value):
        return BDResult(float("nan"), "BD computation gave a non-finite value", overlap)
    return BDResult(value, None, overlap)


def _check_curve(name: str, rates: ArrayLike, quality: ArrayLike) -> tuple[np.ndarray, np.ndarray] | str:
    """The curve sorted by rate, or the reason it cannot enter a BD computation."""
    r, q = np.asarray(rates, dtype=np.float64).ravel(), np.asarray(quality, dtype=np.float64).ravel()
    if r.size != q.size:
        return f"{name} curve has {r.size} rates but {q.size} quality values"
    if r.size < MIN_POINTS:
        return f"{name} curve has {r.size} points; BD needs at least {MIN_POINTS}"
    if not (np.isfinite(r).all() and np.isfinite(q).all()):
        return f"{name} curve has non-finite values"
    if (r <= 0).any():
        return f"{name} curve has non-positive rates"
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    if (np.diff(r) <= 0).any():
        return f"{name} curve has repeated rates"
    if (np.diff(q) <= 0).any():
        return (f"{name} curve is not monotonic (quality must rise strictly with rate); "
                "reduce it with upper_envelope first")
    return r, q


__all__ = ["BDResult", "METHOD", "MIN_POINTS", "bd_quality", "bd_rate", "upper_envelope"]
