"""The ``dmic`` command end to end on real CT: JSON out, outputs on the input grid, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from dmic_core.cli import main
from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps
from dmic_core.defaults import shared_data_dir

REAL_CT = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
pytestmark = pytest.mark.skipif(not REAL_CT.is_file(), reason=f"shared real CT not found at {REAL_CT}")


def run_cli(args: list[str], capsys) -> tuple[int, dict | None, str]:
    code = main(args)
    captured = capsys.readouterr()
    payload = json.loads(captured.out) if code == 0 and captured.out.strip() else None
    return code, payload, captured.err


def test_info_reports_geometry_and_hu(capsys):
    code, info, _ = run_cli(["info", str(REAL_CT)], capsys)
    assert code == 0
    assert info["shape_zyx"] == [164, 126, 120]
    assert info["spacing_zyx_mm"] == [1.5, 1.5, 1.5]
    assert info["hu"]["min"] == -1078 and info["hu"]["max"] == 3343


def test_encode_writes_stream_recon_on_input_grid_and_result(tmp_path, capsys):
    out = tmp_path / "enc"
    code, summary, _ = run_cli(["encode", str(REAL_CT), "--out", str(out), "--qp", "22", "--slices", "70:87"],
                               capsys)
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    stream = (out / "stream.hevc").read_bytes()
    assert result["bits"] == 8 * len(stream) == sum(result["bits_per_frame"])
    assert result["paper_frame_qps"] == dmic_frame_qps(22, 17).tolist()
    # Full 4096-HU range: the same HU step as a paper QP needs 12 QP less (qp.py explains why).
    assert result["coded_frame_qps"] == [max(0, q - 12) for q in result["paper_frame_qps"]]
    # The encoder really used the forced QPs (no CTU map: every CTU at the frame QP).
    assert result["encoder_avg_qp"] == pytest.approx(result["coded_frame_qps"], abs=1e-6)
    recon = nib.load(out / "recon.nii.gz")
    original = nib.load(REAL_CT)
    assert recon.shape == (120, 126, 17)
    # The slab keeps the input's orientation and spacing; its origin moves 70 slices along z.
    np.testing.assert_allclose(recon.affine[:3, :3], original.affine[:3, :3])
    np.testing.assert_allclose(recon.affine[:3, 3], (original.affine @ [0, 0, 70, 1])[:3])
    decoded = np.asarray(recon.dataobj)
    source = np.asarray(original.dataobj)[:, :, 70:87]
    assert 0 < np.abs(decoded.astype(int) - source).mean() < 150  # noisy 1.5-mm CT, P frames at paper QP 28-29
    assert summary["psnr_hu"] == pytest.approx(result["psnr_hu"])


def test_encode_whole_volume_recon_overlays_input(tmp_path, capsys):
    out = tmp_path / "whole"
    code, _, _ = run_cli(["encode", str(REAL_CT), "--out", str(out), "--qp", "14", "--bit-depth", "12"], capsys)
    assert code == 0
    recon, original = nib.load(out / "recon.nii.gz"), nib.load(REAL_CT)
    assert recon.shape == original.shape
    np.testing.assert_allclose(recon.affine, original.affine)
    np.testing.assert_allclose(recon.header.get_zooms(), original.header.get_zooms())
    error = np.abs(np.asarray(recon.dataobj).astype(int) - np.asarray(original.dataobj))
    inside = (np.asarray(original.dataobj) >= -1024) & (np.asarray(original.dataobj) <= 3071)
    assert error[inside].mean() < 15


def test_encode_mask_map_protects_foreground(tmp_path, capsys):
    mask_path = REAL_CT.parent / "aorta.nii.gz"
    outs = {}
    for name, fg, bg in (("flat", 0, 0), ("roi", -2, 8)):
        out = tmp_path / name
        code, _, _ = run_cli(["encode", str(REAL_CT), "--out", str(out), "--qp", "27", "--slices", "10:26",
                              "--mask", str(mask_path), "--fg-dqp", str(fg), "--bg-dqp", str(bg)], capsys)
        assert code == 0
        outs[name] = json.loads((out / "result.json").read_text())
    # Background CTUs got coarser: fewer bits, and the foreground is coded at least as well.
    assert outs["roi"]["bits"] < outs["flat"]["bits"]
    assert outs["roi"]["mean_abs_in_mask"] <= outs["flat"]["mean_abs_in_mask"]
    qp_map = np.load(tmp_path / "roi" / "qp_map.npy")
    assert qp_map.shape == (16, *ctu_grid_shape(126, 120))  # slices 10:26: the aorta fills 1 CTU of 4
    assert set(np.unique(qp_map - np.array(outs["roi"]["paper_frame_qps"])[:, None, None])) <= {-2, 8}


@pytest.mark.parametrize("args, fragment", [
    (["encode", "{bad}", "--out", "{tmp}/o"], "bad.nii.gz"),
    (["encode", "{ct}", "--out", "{tmp}/o", "--slices", "150:400"], "--slices"),
    (["encode", "{ct}", "--out", "{tmp}/o", "--slices", "2:5", "--ctu-dqp", "{map}"], "CTU map"),
    (["info", "{tmp}/missing.nii.gz"], "missing.nii.gz"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, fragment):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    np.save(tmp_path / "map.npy", np.zeros((3, 1, 1), dtype=np.int32))
    argv = [a.format(bad=bad, tmp=tmp_path, ct=REAL_CT, map=tmp_path / "map.npy") for a in args]
    proc = subprocess.run([sys.executable, "-m", "dmic_core.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert fragment in lines[0]
