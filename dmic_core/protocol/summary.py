"""The protocol's tables: BD per volume, mean with a bootstrap interval, wins, share of the oracle.

For every curve and volume: BD-rate on mIoU and BD-mIoU against the constant-QP anchor over the
shared mIoU range, "n/a" with the reason when the curves share less than
:data:`~dmic_core.defaults.MIN_BD_OVERLAP` of it (never extrapolated). Per curve: the mean over
the volumes where the BD is defined with its 95% bootstrap interval, on how many volumes it beats
the best hand-crafted map of that volume, the paired per-volume difference to the one map with
the lowest mean (with its interval: whether a lead over a fixed map is more than noise), and the
share of the oracle's BD-rate gain it captures on the volumes where the oracle ran.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.defaults import MIN_BD_OVERLAP
from dmic_core.evaluation.bd import bd_table
from dmic_core.metrics.stats import bootstrap_mean_ci
from dmic_core.protocol.methods import ORACLE, ORACLE_EXTENDED, TWO_LEVEL_BG, TWO_LEVEL_ON_LABEL

#: The bounds every curve's share of gain is reported against: summary key -> curve name.
BOUNDS: dict[str, str] = {"oracle": ORACLE, "oracle_extended": ORACLE_EXTENDED, "oracle_pair": TWO_LEVEL_ON_LABEL}


def with_extended_oracle(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` with the ``oracle`` rows also counted as ``oracle_extended`` rows on the volumes
    where the extended oracle ran (the extended space contains the paper's offsets)."""
    if "curve" not in points or not (points.curve == ORACLE_EXTENDED).any():
        return points
    volumes = set(points.volume[points.curve == ORACLE_EXTENDED])
    paper = points[(points.curve == ORACLE) & points.volume.isin(volumes)].assign(curve=ORACLE_EXTENDED)
    return pd.concat([points, paper], ignore_index=True)


def with_label_twin(points: pd.DataFrame) -> pd.DataFrame:
    """``points`` with the oracle's rows of ``two_level``'s pair (fg 0, bg ``TWO_LEVEL_BG``) also counted
    as the curve :data:`~dmic_core.protocol.methods.TWO_LEVEL_ON_LABEL`: the like-for-like bound, 8
    points per volume like every method, where the oracle's own curve is an envelope of 72."""
    if "curve" not in points or "fg" not in points or not (points.curve == ORACLE).any():
        return points
    pair = points[(points.curve == ORACLE) & (points.fg == 0) & (points.bg == TWO_LEVEL_BG)]
    return pd.concat([points, pair.assign(curve=TWO_LEVEL_ON_LABEL)], ignore_index=True)


def per_volume_bd(points: pd.DataFrame, min_overlap: float = MIN_BD_OVERLAP) -> pd.DataFrame:
    """One row per (volume, curve): BD-rate, BD-mIoU, overlap and the reason when undefined."""
    tables = []
    for volume, group in with_label_twin(with_extended_oracle(points)).groupby("volume"):
        frame = group.rename(columns={"method": "base_method"}).rename(columns={"curve": "method"})
        table = bd_table(frame, min_overlap=min_overlap)
        if not table.empty:
            table.insert(0, "volume", volume)
            tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def choose_curve(per_volume: pd.DataFrame, curves: Iterable[str]) -> tuple[str | None, pd.DataFrame]:
    """The curve to keep among ``curves`` (model selection on validation volumes) and the table behind it.

    First the curves with a defined BD-rate on the most volumes: an undefined BD means the curve
    does not cover the anchor's mIoU range there (too few distinct points, too little overlap),
    a failure of the curve, not a volume to leave out. Among those, the lowest mean BD-rate over
    the volumes where all of them are defined: a paired comparison, so that a curve is not
    favoured because a hard volume dropped out of its own mean. Returns ``(None, table)`` when no
    curve has a BD anywhere.
    """
    curves = list(dict.fromkeys(curves))
    if per_volume.empty:
        per_volume = pd.DataFrame(columns=["volume", "method", "bd_rate_pct"])
    rows = per_volume[per_volume.method.isin(curves)]
    rate = rows.pivot(index="volume", columns="method", values="bd_rate_pct").reindex(columns=curves)
    defined = rate.notna().sum()
    tied = [c for c in curves if defined[c] == defined.max() and defined[c] > 0]
    paired = rate[tied].dropna()
    table = pd.DataFrame({"curve": curves, "volumes_defined": [int(defined[c]) for c in curves],
                          "paired_volumes": [len(paired) if c in tied else 0 for c in curves],
                          "paired_bd_rate_mean": [float(paired[c].mean()) if c in tied and len(paired)
                                                  else float("nan") for c in curves]})
    if not tied or paired.empty:
        return None, table
    return str(paired.mean().idxmin()), table


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def paired_difference(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """``a - b`` per volume where both are defined: mean with its 95% bootstrap interval, the volumes
    paired and those where ``a`` is lower (the paired comparisons of the report and the benches)."""
    diff = (a - b).dropna()
    ci = bootstrap_mean_ci(diff.values)
    return {"mean": ci.mean, "low": ci.low, "high": ci.high, "volumes": int(diff.size), "lower_on": int((diff < 0).sum())}


def summarise(per_volume: pd.DataFrame) -> pd.DataFrame:
    """One row per curve: mean BD-rate / BD-mIoU with 95% intervals, wins and oracle share."""
    if per_volume.empty:
        return pd.DataFrame()
    rate = per_volume.pivot(index="volume", columns="method", values="bd_rate_pct")
    maps = [m for m in HANDCRAFTED if m in rate.columns]
    best_map = rate[maps].min(axis=1) if maps else pd.Series(np.nan, index=rate.index)
    # one fixed map for a paired comparison: the map with the lowest mean (over its defined volumes)
    map_means = rate[maps].mean() if maps else pd.Series(dtype=float)
    mean_map = str(map_means.idxmin()) if map_means.notna().any() else None
    rows = []
    for curve in rate.columns:
        values = rate[curve]
        quality = per_volume[per_volume.method == curve].set_index("volume")["bd_miou_pp"]
        ci, qci = bootstrap_mean_ci(values.values), bootstrap_mean_ci(quality.values)
        comparable = values.notna() & best_map.notna()
        wins = int((values[comparable] < best_map[comparable]).sum())
        row: dict[str, Any] = {
            "curve": curve, "volumes": int(values.notna().sum()), "of": int(len(values)),
            "bd_rate_mean": ci.mean, "bd_rate_low": ci.low, "bd_rate_high": ci.high,
            "bd_miou_mean": qci.mean, "bd_miou_low": qci.low, "bd_miou_high": qci.high,
            "beats_best_map": wins, "compared_with_map": int(comparable.sum()),
        }
        if mean_map is not None and curve != mean_map:  # paired difference to that map, per volume
            paired = paired_difference(values, rate[mean_map])
            row.update({"vs_map": mean_map, "vs_map_mean": paired["mean"], "vs_map_low": paired["low"],
                        "vs_map_high": paired["high"], "vs_map_volumes": paired["volumes"],
                        "vs_map_wins": paired["lower_on"]})
        for key, bound in BOUNDS.items():  # columns oracle_share_mean, oracle_volumes, oracle_pair_share_mean, ...
            if bound in rate.columns and curve not in BOUNDS.values():
                both = values.notna() & rate[bound].notna() & (rate[bound] < 0)
                shares = (values[both] / rate[bound][both]).values
                row[f"{key}_share_mean"] = float(np.mean(shares)) if shares.size else float("nan")
                row[f"{key}_volumes"] = int(both.sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(v: Any, spec: str = "+.1f") -> str:
    return format(v, spec) if _finite(v) else "n/a"


def _interval(mean: Any, low: Any, high: Any, spec: str, unit: str) -> str:
    if not _finite(mean):
        return "n/a"
    return f"{mean:{spec}}{unit} [{low:{spec}}, {high:{spec}}]"


def markdown(per_volume: pd.DataFrame, summary: pd.DataFrame, order: Iterable[str]) -> str:
    """The summary table, then BD-rate per volume (reasons for every n/a below it)."""
    order = [c for c in order if c in set(summary.curve)] + sorted(set(summary.curve) - set(order))
    extended = "oracle_extended_share_mean" in summary.columns
    pair = "oracle_pair_share_mean" in summary.columns
    paired = "vs_map" in summary.columns and summary.vs_map.notna().any()
    mean_map = summary.vs_map.dropna().iloc[0] if paired else None
    lines = ["| curve | mean BD-rate (95% CI) | mean BD-mIoU pp (95% CI) | volumes with BD | "
             "beats best map |" + (f" minus {mean_map}, paired pp (95% CI); wins |" if paired else "")
             + " share of oracle gain |" + (" share of extended oracle gain |" if extended else "")
             + (f" share of {TWO_LEVEL_ON_LABEL} gain |" if pair else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if paired else "") + "---:|" + ("---:|" if extended else "")
             + ("---:|" if pair else "")]
    by_curve = summary.set_index("curve")

    def versus(r: Any) -> str:
        if not _finite(r.get("vs_map_mean", float("nan"))):
            return " n/a |" if paired else ""
        return (f" {_interval(r.vs_map_mean, r.vs_map_low, r.vs_map_high, '+.1f', '')}; "
                f"{int(r.vs_map_wins)}/{int(r.vs_map_volumes)} |")

    def share(r: Any, key: str) -> str:
        v = r.get(f"{key}_share_mean", float("nan"))
        return f"{_pct(100 * v, '.1f')}% ({int(r.get(f'{key}_volumes'))} vol.)" if _finite(v) else "n/a"

    for curve in order:
        r = by_curve.loc[curve]
        lines.append(
            f"| {curve} | {_interval(r.bd_rate_mean, r.bd_rate_low, r.bd_rate_high, '+.1f', '%')} | "
            f"{_interval(r.bd_miou_mean, r.bd_miou_low, r.bd_miou_high, '+.2f', '')} | "
            f"{int(r.volumes)}/{int(r.of)} | {int(r.beats_best_map)}/{int(r.compared_with_map)} |{versus(r)} "
            f"{share(r, 'oracle')} |" + (f" {share(r, 'oracle_extended')} |" if extended else "")
            + (f" {share(r, 'oracle_pair')} |" if pair else ""))
    volumes = sorted(per_volume.volume.unique())
    lines += ["", "BD-rate (%) on mIoU per volume:", "",
              "| curve | " + " | ".join(volumes) + " |", "|---|" + "---:|" * len(volumes)]
    rate = per_volume.pivot(index="method", columns="volume", values="bd_rate_pct")
    for curve in order:
        if curve in rate.index:
            lines.append(f"| {curve} | " + " | ".join(_pct(rate.loc[curve].get(v)) for v in volumes) + " |")
    reasons = per_volume[per_volume.bd_rate_pct.isna()]
    if not reasons.empty:
        lines += ["", "Undefined BDs:", ""]
        lines += [f"- {r.method} on {r.volume}: {r.reason}" for r in reasons.itertuples()]
    return "\n".join(lines)


def figure(points: pd.DataFrame, per_volume: pd.DataFrame, order: Iterable[str]):
    """Plotly: per-volume BD-rate of each curve (dots) and the mean (bar)."""
    import plotly.graph_objects as go

    order = [c for c in order if c in set(per_volume.method)]
    fig = go.Figure()
    means = per_volume.groupby("method").bd_rate_pct.mean()
    fig.add_bar(x=order, y=[means.get(c) for c in order], name="mean over volumes", opacity=0.5)
    for volume, group in per_volume.groupby("volume"):
        g = group.set_index("method")
        fig.add_scatter(x=order, y=[g.bd_rate_pct.get(c) for c in order], mode="markers", name=volume)
    fig.add_hline(y=-50, line_dash="dash", annotation_text="target -50%")
    fig.update_layout(template="plotly_white", height=520, yaxis_title="BD-rate on mIoU vs constant-QP HEVC (%)",
                      title="Evaluation protocol: lower is better (fewer bits at equal mIoU)")
    return fig


__all__ = ["BOUNDS", "choose_curve", "figure", "markdown", "paired_difference", "per_volume_bd", "summarise", "with_extended_oracle",
           "with_label_twin"]
