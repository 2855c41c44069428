"""Rate-vs-accuracy figures (plotly) and the reader-facing names of point columns, shared by the
CLI, experiments and the app."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dmic_core.agents.handcrafted import HANDCRAFTED

#: Legend names of the methods of :data:`dmic_core.methods.METHOD_NAMES` (others show their own name).
METHOD_LABELS = {
    "hevc": "HEVC constant QP", "dmic": "DMIC (RL agents)", "ratecontrol": "HEVC rate control",
    **{kind: f"hand-crafted {kind}" for kind in HANDCRAFTED},
}

#: Metric -> (axis / column name with unit, True when higher is better).
METRICS: dict[str, tuple[str, bool]] = {
    "vessel_iou": ("Vessel IoU", True),
    "dice": ("Vessel Dice", True),
    "miou": ("mIoU (vessel + background)", True),
    "psnr_hu": ("PSNR over HU range (dB)", True),
    "hu_err_mean": ("Mean |HU error| in vessels (HU)", False),
    "hu_err_max": ("Max |HU error| in vessels (HU)", False),
}
#: Metrics bounded in [0, 1].
UNIT_METRICS = ("vessel_iou", "dice", "miou")

#: Column -> reader-facing name with unit, for points tables (:func:`display_points`).
COLUMN_LABELS = {
    "method": "Method", "qp": "Base QP", "lambda": "DMIC λ", "bpp": "Rate (bits/voxel)", "bits": "Size (kbit)",
    "vessel_iou": "Vessel IoU ↑", "dice": "Vessel Dice ↑", "miou": "mIoU ↑", "psnr_hu": "PSNR (dB) ↑",
    "hu_err_mean": "Vessel |ΔHU| mean ↓", "hu_err_max": "Vessel |ΔHU| max ↓", "seconds": "Time (s)",
}
#: BD table column -> reader-facing name.
BD_LABELS = {
    "method": "Method", "points": "Points", "bd_rate_pct": "BD-rate vs HEVC at equal mIoU (%, negative = fewer bits)",
    "bd_miou_pp": "BD-mIoU vs HEVC (points of %, positive = better)",
    "bd_rate_psnr_pct": "BD-rate at equal PSNR (%)", "bd_psnr_db": "BD-PSNR (dB)", "reason": "Why undefined",
}


def setting_columns(points: pd.DataFrame) -> pd.DataFrame:
    """``qp`` and ``lambda`` columns from ``setting``: DMIC's setting is its λ, every other method's a QP."""
    out = points.copy()
    is_dmic = out["method"] == "dmic"
    out["qp"] = out["setting"].where(~is_dmic)
    out["lambda"] = out["setting"].where(is_dmic)
    return out


def display_points(points: pd.DataFrame) -> pd.DataFrame:
    """A points table for people: method names, QP and λ in their own columns, units in the headers,
    sizes in kbit, values rounded."""
    table = setting_columns(points)
    table["method"] = table["method"].map(lambda m: METHOD_LABELS.get(m, m))
    table["bits"] = table["bits"].astype(float) / 1000.0
    cols = [c for c in COLUMN_LABELS if c in table]
    table = table[cols]
    digits = {"bpp": 4, "bits": 1, "vessel_iou": 3, "dice": 3, "miou": 4, "psnr_hu": 2, "hu_err_mean": 1,
              "hu_err_max": 0, "seconds": 1}
    for col, n in digits.items():
        if col in table:
            table[col] = pd.to_numeric(table[col], errors="coerce").round(n)
    return table.rename(columns=COLUMN_LABELS)


def display_bd_table(table: pd.DataFrame) -> pd.DataFrame:
    """The BD table (:func:`dmic_core.evaluation.bd.bd_table`) with readable headers and methods."""
    cols = [c for c in BD_LABELS if c in table]
    out = table[cols].copy()
    out["method"] = out["method"].map(lambda m: METHOD_LABELS.get(m, m))
    for col in ("bd_rate_pct", "bd_miou_pp", "bd_rate_psnr_pct", "bd_psnr_db"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").round(2)
    if "reason" in out:
        out["reason"] = out["reason"].where(out["reason"].map(lambda r: isinstance(r, str)), "")
    return out.rename(columns=BD_LABELS)


def log_ticks(values) -> tuple[list[float], list[str]]:
    """Tick values and labels of a log rate axis: 1, 2, 5 x 10^k inside the data's range (padded),
    every label a whole number in plain notation ("0.02", "0.5", "2")."""
    v = np.asarray([x for x in np.asarray(values, dtype=float).ravel() if np.isfinite(x) and x > 0])
    if v.size == 0:
        return [], []
    lo, hi = v.min() / 1.3, v.max() * 1.3
    ticks = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10.0**k
            if lo <= t <= hi:
                ticks.append(t)
    if len(ticks) < 2:  # a narrow range: its ends
        ticks = sorted({float(f"{v.min():.2g}"), float(f"{v.max():.2g}")})
    return ticks, [f"{t:.10g}" for t in ticks]


def axis_range(metric: str, values) -> list[float] | None:
    """A y-range that shows differences at their true size: accuracies within [0, 1] spanning at
    least 0.2, PSNR at least 6 dB, HU errors from 0."""
    v = np.asarray([x for x in np.asarray(values, dtype=float).ravel() if np.isfinite(x)])
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if metric in UNIT_METRICS:
        span = max(hi - lo, 0.2)
        mid = (lo + hi) / 2.0
        lo, hi = max(0.0, mid - 0.55 * span), min(1.0, mid + 0.55 * span)
        if hi - lo < span:  # pushed against 0 or 1: extend the other way
            lo, hi = (0.0, min(1.0, span * 1.1)) if lo == 0.0 else (max(0.0, 1.0 - span * 1.1), 1.0)
        return [lo, hi + 0.02 if hi >= 1.0 else hi]
    if metric.startswith("hu_err"):
        return [0.0, hi * 1.1 if hi > 0 else 1.0]
    span = max(hi - lo, 6.0)
    mid = (lo + hi) / 2.0
    return [mid - 0.55 * span, mid + 0.55 * span]


def rate_curves_figure(points: pd.DataFrame, y: str | None = None, title: str = "Rate vs accuracy") -> go.Figure:
    """Bits per voxel vs accuracy per method (``y`` one metric, default vessel IoU and PSNR), hover
    showing QP or λ; readable log ticks, y-ranges that do not blow noise into trends and the
    "better" corner marked."""
    metrics = [y] if y else ["vessel_iou" if "vessel_iou" in points else "miou", "psnr_hu"]
    named = setting_columns(points)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRICS.get(m, (m, True))[0] for m in metrics])
    ticks, labels = log_ticks(points["bpp"]) if len(points) else ([], [])
    for col, metric in enumerate(metrics, start=1):
        name, higher_better = METRICS.get(metric, (metric, True))
        for method, group in named.groupby("method", sort=False):
            group = group.sort_values("bpp")
            knob = "λ" if method == "dmic" else "QP"
            fig.add_trace(go.Scatter(
                x=group.bpp, y=group[metric], mode="lines+markers", name=METHOD_LABELS.get(method, method),
                legendgroup=method, showlegend=col == 1,
                customdata=np.stack([group["setting"].astype(float), group["bits"].astype(float) / 1000.0], axis=1),
                hovertemplate=(f"{METHOD_LABELS.get(method, method)}<br>{knob} %{{customdata[0]:g}}<br>"
                               "rate %{x:.4f} bits/voxel<br>size %{customdata[1]:.1f} kbit<br>" + name
                               + " %{y:.4f}<extra></extra>"),
            ), row=1, col=col)
        fig.update_xaxes(title_text="rate, bits per voxel (log; left = fewer bits)", type="log", tickvals=ticks,
                         ticktext=labels, row=1, col=col)
        yr = axis_range(metric, points[metric]) if metric in points and len(points) else None
        fig.update_yaxes(title_text=f"{name} ({'↑' if higher_better else '↓'} better)", range=yr, row=1, col=col)
        xref = "x domain" if col == 1 else f"x{col} domain"
        yref = "y domain" if col == 1 else f"y{col} domain"
        fig.add_annotation(text="better ↖" if higher_better else "better ↙", x=0.02,
                           y=0.98 if higher_better else 0.02, xref=xref, yref=yref, showarrow=False,
                           xanchor="left", yanchor="top" if higher_better else "bottom",
                           font=dict(color="#2a7a2a", size=13))
    fig.update_layout(title=title, template="plotly_white", height=450, legend=dict(orientation="h", y=-0.25))
    return fig
