"""Rate, fidelity, segmentation agreement and BD numbers against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmic_core.metrics.bd import BDResult, bd_quality, bd_rate, upper_envelope
from dmic_core.metrics.quality import hu_errors, psnr_hu, rate_stats
from dmic_core.metrics.task import dice, iou, miou, segmentation_scores

# --- rate and HU fidelity ---------------------------------------------------------------------


def test_rate_stats():
    s = rate_stats(16_000, (10, 20, 50))  # 10 000 voxels
    assert s == {"bits": 16_000, "bytes": 2000.0, "bpp": 1.6, "compression_ratio": 10.0}
    assert rate_stats(0, (2, 2, 2))["compression_ratio"] == math.inf
    with pytest.raises(ValueError):
        rate_stats(10, (0, 4, 4))


def test_psnr_hu():
    ref = np.zeros((2, 3, 4), np.int16)
    assert psnr_hu(ref, ref) == math.inf
    test = ref.copy()
    test[0, 0, 0] = 24  # MSE = 24^2 / 24 = 24
    assert psnr_hu(ref, test) == pytest.approx(10 * math.log10(4095**2 / 24))
    # int16 arithmetic must not overflow
    a, b = np.full((1, 1, 2), -32768, np.int16), np.full((1, 1, 2), 32767, np.int16)
    assert psnr_hu(a, b) == pytest.approx(10 * math.log10(4095**2 / 65535**2))
    with pytest.raises(ValueError):
        psnr_hu(ref, ref[:1])


def test_hu_errors():
    ref = np.zeros((1, 2, 3), np.int16)
    test = np.array([[[1, -2, 3], [0, 0, -10]]], np.int16)
    mask = np.array([[[1, 1, 0], [0, 0, 0]]], np.uint8)
    e = hu_errors(ref, test, mask)
    assert e == {"mean_abs": 16 / 6, "max_abs": 10.0, "mean_abs_in_mask": 1.5, "max_abs_in_mask": 2.0}
    none = hu_errors(ref, test)
    assert none["mean_abs_in_mask"] is None and none["max_abs_in_mask"] is None
    assert hu_errors(ref, test, np.zeros_like(mask))["max_abs_in_mask"] is None


# --- segmentation -----------------------------------------------------------------------------


def test_iou_dice_miou_hand_computed():
    ref = np.zeros((1, 2, 5), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, 0, :4] = 1    # 4 vessel voxels
    pred[0, 0, 2:5] = 1  # 3 predicted, 2 overlap
    # vessel: |P&R| = 2, |P|R| = 5; background: 10 - 5 = 5 both bg, union of bg = 10 - 2 = 8
    assert iou(pred, ref) == pytest.approx(2 / 5)
    assert dice(pred, ref) == pytest.approx(4 / 7)
    assert miou(pred, ref) == pytest.approx((2 / 5 + 5 / 8) / 2)
    s = segmentation_scores(pred, ref)
    assert s == pytest.approx({"miou": (0.4 + 0.625) / 2, "vessel_iou": 0.4, "background_iou": 0.625,
                               "dice": 4 / 7})


def test_segmentation_edge_cases():
    empty = np.zeros((2, 3, 3), np.uint8)
    full = np.ones_like(empty)
    assert segmentation_scores(empty, empty) == {"miou": 1.0, "vessel_iou": 1.0, "background_iou": 1.0, "dice": 1.0}
    # predicting nothing when everything is vessel: both IoUs 0
    assert segmentation_scores(empty, full) == {"miou": 0.0, "vessel_iou": 0.0, "background_iou": 0.0, "dice": 0.0}
    # labels > 1 count as vessel
    assert iou(full * 2, full) == 1.0
    with pytest.raises(ValueError):
        iou(empty, empty[:1])


# --- BD -----------------------------------------------------------------------------------------

RATES = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
PSNR = np.array([38.0, 41.0, 44.5, 47.0, 49.0])


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25, 0.5])
def test_bd_rate_of_a_rate_scaled_curve(factor):
    r = bd_rate(RATES, PSNR, RATES * factor, PSNR)
    assert r.reason is None and r.ok
    assert r.value == pytest.approx((factor - 1) * 100, abs=1e-9)


def test_bd_quality_of_a_shifted_curve_and_miou_points():
    assert bd_quality(RATES, PSNR, RATES, PSNR + 0.75).value == pytest.approx(0.75)
    miou_a = np.array([0.80, 0.85, 0.88, 0.90])
    r = bd_quality(RATES[:4], miou_a, RATES[:4], miou_a - 0.02)
    assert r.value * 100 == pytest.approx(-2.0)  # the caller's percentage points


def test_bd_partial_overlap_and_unordered_points():
    order = np.array([3, 0, 4, 1, 2])
    r = bd_rate(RATES[order], PSNR[order], RATES * 0.9, PSNR)
    assert r.value == pytest.approx(-10.0)
    partial = bd_rate(RATES, PSNR, RATES[1:] * 0.5, PSNR[1:] + 0.0)
    assert partial.ok and 0 < partial.overlap < 1


def test_bd_with_too_little_overlap_is_undefined_with_the_reason():
    shifted = PSNR + (PSNR.max() - PSNR.min()) * 0.8  # the curves share a fifth of their span
    loose = bd_rate(RATES, PSNR, RATES, shifted)
    assert loose.ok and loose.overlap < 0.3
    strict = bd_rate(RATES, PSNR, RATES, shifted, min_overlap=0.5)
    assert math.isnan(strict.value) and "less than the required 50%" in strict.reason
    assert strict.overlap == pytest.approx(loose.overlap)
    assert bd_rate(RATES, PSNR, RATES * 0.9, PSNR, min_overlap=0.5).value == pytest.approx(-10.0)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    from dmic_core.metrics.stats import bootstrap_mean_ci

    values = [-20.0, -35.0, -59.0, -41.0, float("nan"), -28.0]
    ci = bootstrap_mean_ci(values, seed=3)
    assert ci.n == 5 and ci.mean == pytest.approx(-36.6)
    assert ci.low < ci.mean < ci.high and ci.low >= -59.0 and ci.high <= -20.0
    assert bootstrap_mean_ci(values, seed=3) == ci
    narrow = bootstrap_mean_ci(values, level=0.5, seed=3)
    assert ci.low <= narrow.low and narrow.high <= ci.high
    assert bootstrap_mean_ci([float("nan")]).text() == "n/a"


@pytest.mark.parametrize("args,reason", [
    ((RATES[:3], PSNR[:3], RATES[:3], PSNR[:3]), "at least 4"),
    ((RATES, PSNR, RATES, PSNR[::-1]), "not monotonic"),
    ((RATES, np.array([38, 41, 41, 47, 49.0]), RATES, PSNR), "not monotonic"),
    ((RATES, PSNR, RATES, PSNR + 20), "do not overlap"),
    ((RATES, PSNR, RATES, PSNR[:4]), "5 rates but 4"),
    ((RATES, PSNR, RATES * 0, PSNR), "non-positive"),
    ((RATES, PSNR, RATES, np.array([38, np.nan, 44, 47, 49])), "non-finite"),
    ((np.array([0.1, 0.1, 0.2, 0.4]), PSNR[:4], RATES, PSNR), "repeated rates"),
])
def test_bd_undefined_gives_nan_with_reason(args, reason):
    # quality ranges that do not overlap still share a rate range: only BD-rate is undefined
    for fn in (bd_rate,) if reason == "do not overlap" else (bd_rate, bd_quality):
        r = fn(*args)
        assert isinstance(r, BDResult) and math.isnan(r.value) and not r.ok
        assert reason in r.reason


def test_bd_quality_needs_overlapping_rates():
    r = bd_quality(RATES, PSNR, RATES * 100, PSNR)
    assert math.isnan(r.value) and "rate ranges of anchor and test do not overlap" in r.reason


def test_upper_envelope():
    rates = [0.4, 0.1, 0.2, 0.3, 0.5, 0.5, np.nan]
    quality = [0.90, 0.80, 0.85, 0.84, 0.90, 0.92, 0.99]
    r, q = upper_envelope(rates, quality)
    np.testing.assert_array_equal(r, [0.1, 0.2, 0.4, 0.5])
    np.testing.assert_array_equal(q, [0.80, 0.85, 0.90, 0.92])
    # a wobbly saturating curve becomes usable for BD once reduced
    wobbly_q = np.array([0.80, 0.86, 0.89, 0.8899, 0.905, 0.91])
    wobbly_r = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.8])
    assert not bd_rate(wobbly_r, wobbly_q, wobbly_r, wobbly_q).ok
    er, eq = upper_envelope(wobbly_r, wobbly_q)
    assert bd_rate(er, eq, er * 0.9, eq).value == pytest.approx(-10.0)
