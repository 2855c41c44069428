"""A tiny *real* experiments run: tuning (fabricated surrogate), real encodes of a held-out volume,
Tables I and IV written as CSV / Markdown / HTML with finite numbers (BD NaN with a reason on
3-point curves)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from test_finetune import fabricate_caches, needs_unet, random_pretrained, tiny_dataset


@needs_unet
def test_tiny_experiments_run_writes_tables(tmp_path):
    from dmic_core.experiments import ExperimentConfig, run_experiments
    from dmic_core.evaluation.bd import pooled_curves

    data = tiny_dataset(tmp_path / "data", n_slices=5, size=128)
    cfg = ExperimentConfig(data=str(data), out=str(tmp_path / "out"), work_dir=str(tmp_path / "work"),
                           shots=(1,), iterations=2, variant_iterations=2, test_cases=1, slab=4,
                           qps=(27, 37, 42), lambdas=(1.0, 10.0, 100.0), workers=1, train_workers=1,
                           pretrained=str(random_pretrained(tmp_path / "pre.pt")), clip_frames=3,
                           clips_per_volume=1, cache_dir=str(tmp_path / "cache"))
    fabricate_caches(cfg.finetune_config("a2c", 1, 0))
    results = run_experiments(["table1", "table4"], cfg, command="dmic experiments table1 table4 (test)",
                              log=lambda m: None)
    out = tmp_path / "out"
    for name in ("table1", "table4"):
        for ext in ("csv", "md", "html"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    points = pd.read_csv(out / "points.csv")
    assert set(points.curve) == {"hevc", "ratecontrol", "pretrained", "dmic:a2c-k1-it2"}
    assert len(points) == 12 and points.case.nunique() == 1
    for col in ("bits", "bpp", "miou", "psnr_hu", "seconds_encode", "seconds_decode"):
        assert np.isfinite(points[col]).all() and (points[col] >= 0).all(), col
    assert (points.bits > 0).all()
    # the held-out test volume is not the training volume
    import torch

    meta = torch.load(tmp_path / "work" / "checkpoints" / "s0" / "a2c-k1-it2.pt", weights_only=True)["meta"]
    assert points.case.iloc[0] in meta["split"]["test"] and points.case.iloc[0] not in meta["split"]["train"]
    t1 = results["table1"]
    assert list(t1.curve) == ["ratecontrol", "dmic:a2c-k1-it2", "pretrained"]
    for _, row in t1.iterrows():  # 3-point curves: BD undefined, and the table says why
        if not math.isfinite(row.bd_rate_pct):
            assert isinstance(row.reason, str) and "BD needs at least 4" in row.reason
    md = (out / "table1.md").read_text()
    assert "dmic experiments table1 table4 (test)" in md and "NaN" in md
    t4 = results["table4"]
    assert (t4.encode_s > 0).all() and np.isfinite(t4.decode_s).all()
    assert t4[t4.method.str.startswith("Proposed")].agent_decision_s.iloc[0] > 0
    assert len(pooled_curves(points)) == 12
    # a second run computes nothing new (points are stored) and gives the same table
    again = run_experiments(["table1"], cfg, log=lambda m: None)["table1"]
    pd.testing.assert_frame_equal(again.reset_index(drop=True), t1.reset_index(drop=True))


def test_bd_rows_pooled_and_reason():
    from dmic_core.evaluation.bd import bd_rows

    rows = []
    for case, shift in (("a", 0.0), ("b", 0.01)):
        for i, q in enumerate((22, 27, 32, 37, 42)):
            bpp = 2.0 ** (-i)
            rows.append({"case": case, "curve": "hevc", "setting": q, "bpp": bpp, "miou": 0.95 - 0.03 * i - shift,
                         "psnr_hu": 50 - 3 * i, "dice": 0.9, "bits": 1000})
            rows.append({"case": case, "curve": "x", "setting": q, "bpp": bpp / 2, "miou": 0.95 - 0.03 * i - shift,
                         "psnr_hu": 50 - 3 * i, "dice": 0.9, "bits": 500})
            rows.append({"case": case, "curve": "short", "setting": q, "bpp": bpp, "miou": 0.9, "psnr_hu": 40,
                         "dice": 0.9, "bits": 1000})
    out = bd_rows(pd.DataFrame(rows), ["x", "short"])
    x = out[out.curve == "x"].iloc[0]
    assert x.bd_rate_pct == pytest.approx(-50.0, abs=1.0) and x.cases_with_bd == 2
    short = out[out.curve == "short"].iloc[0]
    assert not math.isfinite(short.bd_rate_pct) and short.reason


def test_each_engine_keeps_its_own_point_log(tmp_path):
    """--codec hm must never read x265's stored points (or the reverse); x265 logs keep their names."""
    from dmic_core.experiments import ExperimentConfig
    from dmic_core.experiments.config import TestCase
    from dmic_core.experiments.curves import point_log

    case = TestCase("case-a", str(tmp_path / "a.nii.gz"), None, (0, 9), "phantom")
    x265 = point_log(case, ExperimentConfig(data="d", out="o", work_dir=str(tmp_path), segmenter="gt"))
    hm = point_log(case, ExperimentConfig(data="d", out="o", work_dir=str(tmp_path), segmenter="gt", codec="hm"))
    assert x265.path != hm.path and hm.path.name.endswith("-hm.jsonl")
    assert not x265.path.name.endswith("-x265.jsonl")
