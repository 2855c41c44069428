"""Reader-facing explanations of rate points (dmic_core.evaluation.explain) and their formatting
(dmic_core.plotting): agreement warning, BD explanation, HU error in vessels, matching at equal rate,
names with units, log ticks, y-ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmic_core.evaluation.bd import bd_table
from dmic_core.evaluation.explain import agreement_warning, bd_explanation, match_at_rate, vessel_hu_errors
from dmic_core.plotting import axis_range, display_points, log_ticks, rate_curves_figure


def _points(hevc_qps=(22, 27, 32, 37), lambdas=(0.0, 1.0, 10.0, 100.0)) -> pd.DataFrame:
    rows = []
    for i, qp in enumerate(sorted(hevc_qps, reverse=True)):
        bpp = 0.02 * 2 ** i
        rows.append({"method": "hevc", "setting": float(qp), "bits": 1000 * 2 ** i, "bpp": bpp,
                     "vessel_iou": 0.5 + 0.1 * i, "dice": 0.6 + 0.08 * i, "miou": 0.74 + 0.05 * i,
                     "psnr_hu": 50 + 3 * i, "hu_err_mean": 20 - 4 * i, "hu_err_max": 200 - 30 * i, "seconds": 1.0})
    for i, lam in enumerate(sorted(lambdas)):
        bpp = 0.018 * 2 ** i
        rows.append({"method": "dmic", "setting": lam, "bits": 900 * 2 ** i, "bpp": bpp,
                     "vessel_iou": 0.55 + 0.1 * i, "dice": 0.65 + 0.08 * i, "miou": 0.76 + 0.05 * i,
                     "psnr_hu": 49 + 3 * i, "hu_err_mean": 19 - 4 * i, "hu_err_max": 190 - 30 * i, "seconds": 1.0})
    return pd.DataFrame(rows)


def test_agreement_warning_fires_for_a_label_of_another_structure():
    aorta_like = _points().assign(vessel_iou=0.01, miou=0.484)
    text = agreement_warning(aorta_like, {"vessel_iou": 0.012, "miou": 0.49}, "label")
    assert text and "do not describe the same structure" in text and "0.012" in text
    assert agreement_warning(aorta_like) is not None  # without the original's scores: the best point
    assert agreement_warning(_points(), {"vessel_iou": 0.8}, "label") is None


def test_bd_explanation_matches_the_bd_table():
    assert bd_explanation(_points(), quality="miou") is None
    assert np.isfinite(bd_table(_points())["bd_rate_pct"]).all()
    short = _points(hevc_qps=(22, 32, 42))
    text = bd_explanation(short, quality="miou")
    assert "at least 4 rate points per curve" in text and "hevc 3 of 3" in text
    assert not np.isfinite(bd_table(short)["bd_rate_pct"]).any()
    assert "add hevc" in bd_explanation(_points()[lambda d: d.method == "dmic"])


def test_vessel_hu_errors_read_result_json():
    record = {"summary": {"mean_abs_in_mask": 12.5, "max_abs_in_mask": 180.0}}
    assert vessel_hu_errors(record) == {"hu_err_mean": 12.5, "hu_err_max": 180.0}
    assert vessel_hu_errors({}) == {"hu_err_mean": None, "hu_err_max": None}


def test_match_at_rate_interpolates_inside_and_states_the_distance_outside():
    points = _points()
    inside = match_at_rate(points, "hevc", 0.02 * 2 ** 1.5)  # half way (log) between the 2nd and 3rd point
    assert inside["interpolated"] and inside["rate_diff_pct"] == 0.0
    assert inside["vessel_iou"] == pytest.approx(0.65)
    outside = match_at_rate(points, "hevc", 0.01)
    assert not outside["interpolated"] and outside["rate_diff_pct"] == pytest.approx(100.0) and outside["far"]
    assert match_at_rate(points, "ratecontrol", 0.1) is None


def test_display_points_has_units_and_separate_qp_and_lambda():
    table = display_points(_points())
    assert {"Base QP", "DMIC λ", "Rate (bits/voxel)", "Vessel IoU ↑", "Vessel |ΔHU| mean ↓"} <= set(table.columns)
    hevc = table[table["Method"] == "HEVC constant QP"]
    assert hevc["DMIC λ"].isna().all() and hevc["Base QP"].notna().all()
    assert "setting" not in table and "bd_rate_pct" not in table


def test_log_ticks_are_plain_numbers_and_y_ranges_keep_noise_small():
    ticks, labels = log_ticks([0.03, 0.09, 0.5, 2.1])
    assert labels == ["0.05", "0.1", "0.2", "0.5", "1", "2"] and ticks == [float(t) for t in labels]
    lo, hi = axis_range("miou", [0.483, 0.4855])
    assert hi - lo >= 0.2 and 0.0 <= lo and hi <= 1.0
    lo, hi = axis_range("vessel_iou", [1.0, 1.0])
    assert hi <= 1.05 and lo >= 0.7  # not up to 2
    fig = rate_curves_figure(_points(), y="vessel_iou")
    assert fig.layout.xaxis.ticktext and "better" in fig.layout.yaxis.title.text
    assert any("better" in a.text for a in fig.layout.annotations)
