"""Sweeps and single-point compression on tiny phantoms: outputs, anchor monotonicity, BD reasons.

Real encodes and the real segmenter throughout (a 6 x 128 x 128 phantom keeps each point to about
a second); the BD table is also checked on hand-made curves where the answer is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmic_core.cli import main
from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps
from dmic_core.evaluation import load_case
from dmic_core.evaluation.bd import bd_table
from dmic_core.methods import PointSpec, default_specs
from dmic_core.runs import run_point
from dmic_core.sweep import write_sweep

SEED = 7951  # outside the segmenter's (1000-3009) and the agents' source seeds (5001-5012)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 6-slice 128 x 128 phantom (image, label) written by ``dmic phantom``."""
    out = tmp_path_factory.mktemp("phantom")
    assert main(["phantom", "--seed", str(SEED), "--out", str(out), "--slices", "6", "--size", "128"]) == 0
    image = next(out.glob("*img*.nii*"))
    label = next(out.glob("*label*.nii*"))
    return image, label


def _cli(args: list[str], capsys) -> dict:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _points(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "setting": s, "bpp": r, "miou": q, "psnr_hu": 30 + 10 * q}
                         for m, s, r, q in rows])


def test_sweep_cli_writes_points_bd_and_figure(tiny, tmp_path, capsys):
    image, label = tiny
    out = tmp_path / "sweep"
    payload = _cli(["sweep", str(image), "--label", str(label), "--out", str(out),
                    "--methods", "hevc,linear,dmic,ratecontrol", "--qps", "22,32,42", "--lambdas", "0,100",
                    "--workers", "1"], capsys)
    for name in ("points.csv", "bd.json", "curves.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert payload["outputs"]["points"] == str(out / "points.csv")
    points = pd.read_csv(out / "points.csv")
    for column in ("method", "setting", "bits", "bpp", "miou", "dice", "psnr_hu", "seconds"):
        assert column in points.columns
    # hevc 3 QPs, linear QP_I 22/32/37 (42 clipped to the paper's 37), dmic 2 lambdas, ratecontrol 3.
    assert points.groupby("method").size().to_dict() == {"hevc": 3, "linear": 3, "dmic": 2, "ratecontrol": 3}
    assert ((points.miou >= 0) & (points.miou <= 1)).all() and (points.bits > 0).all()
    # Constant-QP anchor: rate strictly falls as QP rises (and PSNR with it).
    hevc = points[points.method == "hevc"].sort_values("setting")
    assert np.all(np.diff(hevc.bits.values) < 0)
    assert np.all(np.diff(hevc.psnr_hu.values) < 0)
    bd = json.loads((out / "bd.json").read_text())
    assert bd["anchor"] == "hevc" and bd["meta"]["label"] == str(label)
    rows = {r["method"]: r for r in bd["methods"]}
    assert set(rows) == {"linear", "dmic", "ratecontrol"}
    for row in rows.values():
        # Either a number or a stated reason, never a silent NaN.
        defined = row["bd_rate_pct"] is not None and np.isfinite(row["bd_rate_pct"])
        assert defined or (isinstance(row["reason"], str) and row["reason"])
    # Two lambdas are too few points for a BD curve: the reason says so.
    assert "at least" in rows["dmic"]["reason"]
    assert "plotly" in (out / "curves.html").read_text()[:200000].lower()


def test_run_point_hevc_is_uniform_and_write_sweep_roundtrips(tiny, tmp_path):
    image, label = tiny
    case = load_case(image, label)
    result = run_point(case, PointSpec("hevc", 27), out_dir=tmp_path / "pt")
    assert result.qp_map is not None
    rows, cols = ctu_grid_shape(*case.volume.shape[1:])
    assert result.qp_map.shape == (case.volume.n_frames, rows, cols)
    # The anchor applies no CTU offsets: every CTU of a frame carries the frame's QP.
    assert (result.qp_map == np.asarray(result.paper_frame_qps)[:, None, None]).all()
    written = json.loads((tmp_path / "pt" / "result.json").read_text())
    assert written["bits"] == result.bits == 8 * (tmp_path / "pt" / "stream.hevc").stat().st_size
    frame = pd.DataFrame([result.row(), {**result.row(), "method": "x", "bpp": result.bpp / 2}])
    paths = write_sweep(tmp_path / "w", frame, {"note": "tiny"})
    assert all(p.is_file() for p in paths.values())
    assert json.loads(paths["bd"].read_text())["methods"][0]["reason"]  # one point: a reason


def test_default_specs_clip_handcrafted_qps_and_refuse_unknown():
    specs = default_specs(["hevc", "sqrt", "dmic"], qps=[12, 22, 42], lambdas=[0, 10])
    by = {}
    for s in specs:
        by.setdefault(s.method, []).append(s.setting)
    assert by == {"hevc": [12, 22, 42], "sqrt": [14, 22, 37], "dmic": [0, 10]}
    with pytest.raises(ValueError, match="unknown method"):
        default_specs(["hevc", "nope"])


def test_bd_table_values_and_reasons_on_known_curves():
    anchor = [("hevc", q, r, m) for q, r, m in ((42, 0.01, 0.70), (37, 0.02, 0.80), (32, 0.04, 0.88),
                                               (27, 0.08, 0.92))]
    half = [("half", q, r / 2, m) for _, q, r, m in anchor]  # same quality at half the rate
    flat = [("flat", q, 0.01 * (i + 1), 0.5) for i, q in enumerate((1, 2, 3, 4))]  # never reaches anchor
    few = [("few", 1, 0.02, 0.8), ("few", 2, 0.03, 0.85)]
    table = bd_table(_points(anchor + half + flat + few)).set_index("method")
    assert table.loc["half", "bd_rate_pct"] == pytest.approx(-50.0, abs=0.5)
    assert table.loc["half", "bd_miou_pp"] > 0
    assert pd.isna(table.loc["half", "reason"])
    # mIoU saturates at 0.5: the upper envelope keeps one point, too few for BD.
    assert np.isnan(table.loc["flat", "bd_rate_pct"]) and "at least" in table.loc["flat", "reason"]
    assert np.isnan(table.loc["few", "bd_rate_pct"]) and "at least" in table.loc["few", "reason"]
    # A curve entirely below the anchor's quality range: BD-rate undefined, overlap reason.
    low = [("low", q, r, m - 0.5) for _, q, r, m in anchor]
    table = bd_table(_points(anchor + low)).set_index("method")
    assert "do not overlap" in table.loc["low", "reason"]


def test_compress_dmic_writes_stream_recon_absolute_qp_map_and_result(tiny, tmp_path, capsys):
    image, label = tiny
    out = tmp_path / "dmic"
    summary = _cli(["compress", str(image), "--label", str(label), "--method", "dmic", "--lambda", "10",
                    "--out", str(out)], capsys)
    for name in ("stream.hevc", "recon.nii.gz", "qp_map.npy", "result.json"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    qp_map = np.load(out / "qp_map.npy")
    n_frames = 6
    rows, cols = ctu_grid_shape(128, 128)
    assert qp_map.shape == (n_frames, rows, cols)
    qp_i = result["qp_i"]
    assert summary["qp_i"] == qp_i == result["paper_frame_qps"][0]
    assert result["paper_frame_qps"] == dmic_frame_qps(qp_i, n_frames).tolist()
    # Absolute paper QPs: frame QP plus a paper-space offset (-2..+8).
    offsets = qp_map - np.asarray(result["paper_frame_qps"])[:, None, None]
    assert set(np.unique(offsets).tolist()) <= {-2, 0, 2, 4, 6, 8}
    for key in ("bits", "bpp", "miou", "dice", "psnr_hu", "seconds_decide", "seconds_encode",
                "seconds_decode", "seconds_segment"):
        assert key in result, key
    assert result["bits"] == 8 * (out / "stream.hevc").stat().st_size


def test_compress_baseline_map_is_absolute_and_monotone_in_mask(tiny, tmp_path, capsys):
    image, label = tiny
    out = tmp_path / "exp"
    _cli(["compress", str(image), "--label", str(label), "--method", "exp", "--qp", "27", "--out", str(out)],
         capsys)
    qp_map = np.load(out / "qp_map.npy")
    result = json.loads((out / "result.json").read_text())
    assert qp_map.shape[0] == 6 and qp_map.min() >= result["paper_frame_qps"][0] - 2
    assert qp_map.max() <= max(result["paper_frame_qps"]) + 8
