"""Rate-vs-accuracy figures (plotly), shared by the CLI, experiments and the app."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dmic_core.agents.handcrafted import HANDCRAFTED

#: Legend names of the methods of :data:`dmic_core.methods.METHOD_NAMES` (others show their own name).
METHOD_LABELS = {
    "hevc": "HEVC constant QP", "dmic": "DMIC (RL agents)", "ratecontrol": "HEVC rate control",
    **{kind: f"hand-crafted {kind}" for kind in HANDCRAFTED},
}


def rate_curves_figure(points: pd.DataFrame, y: str | None = None, title: str = "Rate vs accuracy") -> go.Figure:
    """bpp vs mIoU and vs PSNR per method (or one of them with ``y``), hover showing the setting."""
    metrics = [y] if y else ["miou", "psnr_hu"]
    names = {"miou": "mIoU", "psnr_hu": "PSNR over HU range (dB)", "dice": "vessel Dice"}
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[names.get(m, m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        for method, group in points.groupby("method", sort=False):
            group = group.sort_values("bpp")
            fig.add_trace(go.Scatter(
                x=group.bpp, y=group[metric], mode="lines+markers", name=METHOD_LABELS.get(method, method),
                legendgroup=method, showlegend=col == 1,
                customdata=group[["setting", "bits"]].values,
                hovertemplate=(f"{METHOD_LABELS.get(method, method)}<br>setting %{{customdata[0]}}<br>"
                               "bpp %{x:.4f}<br>bits %{customdata[1]}<br>" + names.get(metric, metric)
                               + " %{y:.4f}<extra></extra>"),
            ), row=1, col=col)
        fig.update_xaxes(title_text="bits per voxel", type="log", row=1, col=col)
        fig.update_yaxes(title_text=names.get(metric, metric), row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", height=450, legend=dict(orientation="h", y=-0.2))
    return fig
