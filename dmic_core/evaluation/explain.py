"""What a table of rate points means to a reader: the numbers the app leads with and the plain-words
warnings and explanations beside them.

* :func:`agreement_warning` -- the reference (an uploaded label) and the segmenter do not describe
  the same structure: even the (near-)lossless points barely overlap it, so every accuracy number is
  meaningless (an aorta label scored against a coronary model gives vessel IoU ~0.01 while mIoU,
  mostly background, reads ~0.48).
* :func:`bd_explanation` -- the one sentence the app shows when a BD number is undefined.
* :func:`vessel_hu_errors` -- mean / max absolute HU error inside the reference vessel mask, from a
  point's ``result.json``.
* :func:`match_at_rate` -- the anchor's accuracy interpolated at the test point's rate (log bpp),
  or, outside the anchor's range, its nearest point with the rate distance stated.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from dmic_core.metrics.bd import MIN_POINTS, upper_envelope

#: Below this vessel IoU at the best point of a job the reference and the segmenter are taken to
#: describe different structures (compression alone does not take a matching model below ~0.5).
AGREEMENT_MIN_VESSEL_IOU = 0.3
#: Rate distance (|log bpp ratio| as a percentage) above which a matched anchor point is "far".
FAR_RATE_PCT = 15.0


def agreement_warning(points: pd.DataFrame, original_scores: Mapping[str, float] | None = None,
                      reference: str | None = None) -> str | None:
    """A warning when the reference and the segmenter disagree even at (near-)lossless quality.

    ``original_scores``: the segmentation of the *original* against the reference (``result.json``'s
    ``original_scores``); without it the best point of ``points`` (its highest vessel IoU, normally
    the finest QP) stands for it. None when they agree.
    """
    best = None
    source = "even on the uncompressed original"
    if original_scores and original_scores.get("vessel_iou") is not None:
        best = float(original_scores["vessel_iou"])
    elif len(points) and "vessel_iou" in points and points["vessel_iou"].notna().any():
        best = float(points["vessel_iou"].max())
        source = "even at the finest rate point"
    if best is None or not np.isfinite(best) or best >= AGREEMENT_MIN_VESSEL_IOU:
        return None
    what = "the uploaded label" if reference in (None, "label") else "the reference"
    return (f"This label and this model do not describe the same structure: the segmenter's vessels "
            f"overlap {what} by a vessel IoU of {best:.3f} {source}, so every accuracy number of this job "
            "is meaningless (mIoU stays near 0.5 because it averages in the background). Upload the label "
            "of the coronary arteries, or score without a label (against the model's own segmentation "
            "of the original).")


def bd_explanation(points: pd.DataFrame, anchor: str = "hevc", quality: str = "vessel_iou") -> str | None:
    """Why BD numbers are undefined for this job (None when every method has a BD-ready curve).

    BD needs at least :data:`~dmic_core.metrics.bd.MIN_POINTS` points on each curve's upper envelope
    (points beaten by a cheaper one are dropped), for the anchor and for each other method.
    """
    if points.empty:
        return "BD numbers need finished rate points."
    methods = [m for m in points["method"].unique() if m != anchor]
    if anchor not in set(points["method"]):
        return f"BD numbers compare a method with the {anchor.upper()} anchor: add {anchor} to the job."
    if not methods:
        return f"BD numbers compare another method with {anchor.upper()}: add a second method to the job."
    short = []
    for method in [anchor, *methods]:
        group = points[points["method"] == method]
        column = quality if quality in group and group[quality].notna().any() else "miou"
        rates, qual = upper_envelope(group["bpp"].astype(float).values, group[column].astype(float).values)
        if len(rates) < MIN_POINTS:
            short.append(f"{method} {len(rates)} of {len(group)}")
    if not short:
        return None
    return (f"BD needs at least {MIN_POINTS} rate points per curve whose accuracy rises with rate "
            f"(usable points: {', '.join(short)}). Choose at least {MIN_POINTS} base QPs and "
            f"{MIN_POINTS} DMIC λ values.")


def vessel_hu_errors(record: Mapping[str, Any] | None) -> dict[str, float | None]:
    """``hu_err_mean`` / ``hu_err_max``: absolute HU error inside the reference vessel mask of a point."""
    summary = (record or {}).get("summary") or {}
    return {"hu_err_mean": summary.get("mean_abs_in_mask"), "hu_err_max": summary.get("max_abs_in_mask")}


def match_at_rate(points: pd.DataFrame, method: str, bpp: float,
                  metrics: tuple[str, ...] = ("vessel_iou", "dice", "miou", "psnr_hu", "hu_err_mean")
                  ) -> dict[str, Any] | None:
    """``method``'s numbers at rate ``bpp``: interpolated linearly in log bpp between its two
    neighbouring points when ``bpp`` lies inside its rate range (``interpolated`` True, rate distance
    0), else its nearest point with ``rate_diff_pct`` = its rate against ``bpp`` and ``far`` when
    that exceeds :data:`FAR_RATE_PCT`. Also returns ``nearest`` (the nearest point's row). None when
    the method has no point with a positive rate."""
    rows = points[(points["method"] == method) & (points["bpp"] > 0)].sort_values("bpp")
    if rows.empty or not bpp or bpp <= 0:
        return None
    log_r = np.log(rows["bpp"].astype(float).values)
    target = float(np.log(bpp))
    nearest = rows.iloc[int(np.argmin(np.abs(log_r - target)))]
    out: dict[str, Any] = {"nearest": nearest, "bpp": float(bpp)}
    if len(rows) >= 2 and log_r[0] <= target <= log_r[-1]:
        for m in metrics:
            if m in rows and rows[m].notna().all():
                out[m] = float(np.interp(target, log_r, rows[m].astype(float).values))
            else:
                out[m] = None
        out.update(interpolated=True, rate_diff_pct=0.0, far=False)
        return out
    for m in metrics:
        out[m] = None if m not in rows or pd.isna(nearest.get(m)) else float(nearest[m])
    diff = 100.0 * (float(nearest["bpp"]) / float(bpp) - 1.0)
    out.update(bpp=float(nearest["bpp"]), interpolated=False, rate_diff_pct=diff, far=abs(diff) > FAR_RATE_PCT)
    return out


__all__ = ["AGREEMENT_MIN_VESSEL_IOU", "FAR_RATE_PCT", "agreement_warning", "bd_explanation", "match_at_rate",
           "vessel_hu_errors"]
