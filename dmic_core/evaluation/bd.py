"""BD tables: BD-rate and BD-quality of rate curves against the constant-QP HEVC anchor.

* :func:`bd_table` -- every method of one points table against the anchor (a sweep, one volume).
* :func:`pooled_curves`, :func:`bd_rows`, :func:`rate_diff_equal_quality` -- curves pooled over
  test volumes (the experiments' tables): mean bpp and mIoU per setting, BD on the pooled curve,
  the per-volume mean beside it, and the rate difference at equal mIoU where BD is undefined.
* :func:`bd_per_volume`, :func:`bd_per_method`, :func:`mean_curve_bd` -- a dataset's points
  (column ``case_id``): BD per volume and its summary per method (batch tables).

Every curve is reduced to its upper envelope first (:func:`~dmic_core.metrics.bd.upper_envelope`):
mIoU saturates at high rates and wobbles by a few 1e-4, which would otherwise make every curve
"non-monotonic" and its BD undefined. The BD integrals are :mod:`dmic_core.metrics.bd`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dmic_core.metrics.bd import bd_quality, bd_rate, upper_envelope

BD_COLUMNS = ("bd_rate_pct", "bd_miou_pp", "bd_rate_psnr_pct", "bd_psnr_db")


def bd_table(points: pd.DataFrame, anchor: str = "hevc", envelope: bool = True,
             min_overlap: float = 0.0) -> pd.DataFrame:
    """BD-rate (%) and BD-mIoU (percentage points) of each method against ``anchor``.

    With ``envelope`` each curve is first reduced to its upper envelope (points beaten by a cheaper
    point are dropped): mIoU saturates at high rates and wobbles by a few 1e-4, which would
    otherwise make every curve "non-monotonic" and its BD undefined. ``min_overlap``: the smallest
    shared fraction of the two curves' joint range for a defined BD (below it: NaN and the reason);
    the overlap itself is in ``overlap_miou`` / ``overlap_psnr``.
    """
    rows = []
    base = points[points.method == anchor].sort_values("bpp")
    for method, group in points.groupby("method"):
        if method == anchor:
            continue
        group = group.sort_values("bpp")
        row: dict[str, Any] = {"method": method, "points": len(group)}
        for metric, label in (("miou", "miou"), ("psnr_hu", "psnr")):
            ar, aq, tr, tq = base.bpp.values, base[metric].values, group.bpp.values, group[metric].values
            if envelope:
                ar, aq = upper_envelope(ar, aq)
                tr, tq = upper_envelope(tr, tq)
            rate = bd_rate(ar, aq, tr, tq, min_overlap=min_overlap)
            quality = bd_quality(ar, aq, tr, tq, min_overlap=min_overlap)
            scale = 100.0 if metric == "miou" else 1.0
            row[f"overlap_{label}"] = rate.overlap
            row[f"bd_rate_{label}_pct"] = rate.value
            row[f"bd_{label}" + ("_pp" if metric == "miou" else "_db")] = quality.value * scale
            row[f"reason_{label}"] = rate.reason or quality.reason
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.rename(columns={"bd_rate_miou_pct": "bd_rate_pct", "bd_miou_pp": "bd_miou_pp"})
        table["reason"] = table["reason_miou"]
    return table


# --- curves pooled over test volumes ---------------------------------------------------------

def pooled_curves(points: pd.DataFrame) -> pd.DataFrame:
    """Mean bpp / mIoU / PSNR per (curve, setting) over the test volumes that curve was evaluated
    on (settings missing on one of them are dropped); ``cases`` says how many."""
    frames = []
    for curve, grp in points.groupby("curve", sort=False):
        n = grp.case.nunique()
        g = grp.groupby("setting").agg(bpp=("bpp", "mean"), miou=("miou", "mean"), psnr_hu=("psnr_hu", "mean"),
                                       dice=("dice", "mean"), bits=("bits", "mean"),
                                       cases=("case", "nunique")).reset_index()
        g = g[g.cases == n]
        frames.append(g.assign(curve=curve, method=curve))
    cols = ["curve", "setting", "bpp", "miou", "psnr_hu", "dice", "bits", "cases", "method"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def rate_diff_equal_quality(anchor: pd.DataFrame, test: pd.DataFrame) -> tuple[float, int]:
    """Mean rate difference (%) of the test curve's points against the anchor at *equal mIoU*.

    For every point of the test curve's upper envelope whose mIoU lies inside the anchor's
    envelope range: ``100 (bpp / bpp_anchor(mIoU) - 1)``, ``log bpp_anchor`` interpolated linearly in
    mIoU between the anchor's points. This is BD-rate's integrand sampled at the test points; unlike
    BD it is defined for curves with fewer than four distinct points (agents whose decisions
    collapse onto a few QPs). Returns (value, points used); NaN when no point is in range.
    """
    ar, aq = upper_envelope(anchor.bpp.values, anchor.miou.values)
    tr, tq = upper_envelope(test.bpp.values, test.miou.values)
    if len(ar) < 2 or not len(tr):
        return float("nan"), 0
    inside = (tq >= aq.min()) & (tq <= aq.max())
    if not inside.any():
        return float("nan"), 0
    log_ref = np.interp(tq[inside], aq, np.log(ar))
    return float(np.mean(100.0 * (tr[inside] / np.exp(log_ref) - 1.0))), int(inside.sum())


def bd_rows(points: pd.DataFrame, curves: Sequence[str]) -> pd.DataFrame:
    """BD-rate / BD-mIoU of ``curves`` against ``hevc``: pooled curve, and per-case mean."""
    out = []
    for name in curves:
        row: dict[str, Any] = {"curve": name}
        # pool over the test volumes this curve was evaluated on (the anchor on the same volumes)
        on = points[points.curve == name].case.unique()
        sub = points[points.case.isin(on) & points.curve.isin(["hevc", name])]
        pooled = pooled_curves(sub) if len(sub) else sub
        table = bd_table(pooled) if len(pooled) else pd.DataFrame()
        hit = table[table.method == name] if not table.empty else table
        if len(hit):
            h = hit.iloc[0]
            row.update(bd_rate_pct=h.bd_rate_pct, bd_miou_pp=h.bd_miou_pp,
                       bd_rate_psnr_pct=h.bd_rate_psnr_pct, reason=h.reason if isinstance(h.reason, str) else "")
        else:
            row.update(bd_rate_pct=float("nan"), bd_miou_pp=float("nan"), bd_rate_psnr_pct=float("nan"),
                       reason="no points for this curve")
        if len(pooled):
            row["dr_eq_miou_pct"], row["dr_points"] = rate_diff_equal_quality(
                pooled[pooled.curve == "hevc"], pooled[pooled.curve == name])
        else:
            row["dr_eq_miou_pct"], row["dr_points"] = float("nan"), 0
        row["distinct_points"] = int(len(pooled[pooled.curve == name].drop_duplicates(["bpp", "miou"]))) if len(pooled) else 0
        per_case = []
        reasons = []
        for case, grp in points.groupby("case"):
            t = bd_table(grp[grp.curve.isin(["hevc", name])].assign(method=lambda d: d.curve))
            if t.empty:
                continue
            v = float(t.iloc[0].bd_rate_pct)
            if np.isfinite(v):
                per_case.append(v)
            elif isinstance(t.iloc[0].reason, str):
                reasons.append(f"{case}: {t.iloc[0].reason}")
        row["bd_rate_pct_case_mean"] = float(np.mean(per_case)) if per_case else float("nan")
        row["cases_with_bd"] = len(per_case)
        row["cases"] = int(len(on))
        if not np.isfinite(row["bd_rate_pct"]) and not row["reason"]:
            row["reason"] = "; ".join(reasons) or "BD undefined"
        out.append(row)
    return pd.DataFrame(out)


# --- a dataset: BD per volume and per method ----------------------------------------------------

def bd_per_volume(points: pd.DataFrame, anchor: str = "hevc") -> pd.DataFrame:
    """BD of every method against ``anchor`` on each volume (see :func:`bd_table`)."""
    tables = []
    for case_id, group in points.groupby("case_id", sort=True):
        if anchor not in set(group.method):
            continue
        table = bd_table(group.drop(columns="case_id"), anchor=anchor)
        if not table.empty:
            table.insert(0, "case_id", case_id)
            tables.append(table)
    if not tables:
        return pd.DataFrame(columns=["case_id", "method", "points", *BD_COLUMNS, "reason"])
    return pd.concat(tables, ignore_index=True)


def bd_per_method(points: pd.DataFrame, per_volume: pd.DataFrame, anchor: str = "hevc") -> pd.DataFrame:
    """Per method: volumes with a defined BD, mean / median of the per-volume values, mean-curve BD."""
    rows = []
    for method in sorted(set(points.method) - {anchor}):
        sub = per_volume[per_volume.method == method] if not per_volume.empty else per_volume
        row: dict[str, Any] = {"method": method, "volumes": int(points[points.method == method].case_id.nunique())}
        for col in BD_COLUMNS:
            values = pd.to_numeric(sub[col], errors="coerce").dropna() if col in sub else pd.Series(dtype=float)
            row[f"{col}_n"] = int(len(values))
            row[f"{col}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{col}_median"] = float(values.median()) if len(values) else math.nan
        row.update(mean_curve_bd(points, method, anchor))
        rows.append(row)
    return pd.DataFrame(rows)


def mean_curve_bd(points: pd.DataFrame, method: str, anchor: str = "hevc") -> dict[str, Any]:
    """BD of the dataset-mean curves of ``method`` and ``anchor``.

    Averaged per setting over the volumes where both have every setting of the batch: a volume
    with a missing point would pull the mean curve towards itself at the other settings.
    """
    cases = _complete_cases(points, method) & _complete_cases(points, anchor)
    row: dict[str, Any] = {"mean_curve_volumes": len(cases)}
    row.update({f"{col}_mean_curve": math.nan for col in BD_COLUMNS})
    if not cases:
        return row
    sub = points[points.method.isin([method, anchor]) & points.case_id.isin(cases)]
    mean = sub.groupby(["method", "setting"], as_index=False)[["bpp", "miou", "psnr_hu"]].mean()
    table = bd_table(mean, anchor=anchor)
    if not table.empty:
        row.update({f"{col}_mean_curve": float(table[col].iloc[0]) for col in BD_COLUMNS if col in table})
    return row


def _complete_cases(points: pd.DataFrame, method: str) -> set[str]:
    sub = points[points.method == method]
    settings = set(sub.setting)
    return {c for c, g in sub.groupby("case_id") if set(g.setting) == settings}
