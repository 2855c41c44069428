"""HM backend: the parts that need no HM always run; real encodes run when HM is installed.

HM is never committed; put TAppEncoder(Static) in hm_bin/ or $DMIC_HM_DIR (hm_bin/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmic_core.codecs import get_codec
from dmic_core.codecs.hm import (
    CTU_MAP_OPTION,
    HM_DIR_ENV,
    HMCodec,
    anchor_base_qp,
    find_hm_binaries,
    parse_hm_log,
    split_access_units,
    write_cfg,
)
from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps, hm_anchor_frame_qps
from dmic_core.codecs.x265 import X265Codec
from dmic_core.errors import CodecUnavailableError

HM_REASON = HMCodec.availability()


def hm_test(fn):  # type: ignore[no-untyped-def]
    """Mark a test as needing HM and skip it, with the reason shown, when HM is absent."""
    skip = pytest.mark.skipif(HM_REASON is not None, reason=f"HM absent: {HM_REASON}")
    return pytest.mark.needs_hm(skip(fn))


def ct_like_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """12-bit synthetic CT slices (body, bone ring, moving vessels, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for k in range(n):
        hu = np.full((height, width), -1000.0)
        body = ((yy - height / 2) / (0.45 * height)) ** 2 + ((xx - width / 2) / (0.47 * width)) ** 2 < 1
        hu[body] = 40 + 15 * np.sin(xx[body] / 7.0) * np.cos(yy[body] / 11.0)
        hu[np.abs(np.hypot(yy - height / 2, xx - width / 2) - 0.3 * min(height, width)) < 4] = 900
        hu[np.hypot(yy - 0.4 * height - 1.5 * k, xx - 0.45 * width) < 6] = 350
        out.append(hu + rng.normal(0, 20, hu.shape))
    return (np.clip(np.stack(out), -1024, 3071) + 1024).astype(np.uint16)


def test_missing_hm_is_reported_with_the_places_searched(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HM_DIR_ENV, str(tmp_path))
    monkeypatch.setattr("dmic_core.codecs.hm.REPO_HM_DIR", tmp_path / "hm_bin")
    reason = HMCodec.availability()
    assert reason is not None and "TAppEncoder" in reason and str(tmp_path) in reason
    with pytest.raises(CodecUnavailableError, match="TAppEncoder"):
        get_codec("hm")


def test_binaries_are_found_in_the_env_folder_first(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "TAppEncoderStatic"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "TAppDecoder").write_text("not executable")
    monkeypatch.setenv(HM_DIR_ENV, str(tmp_path))
    found = find_hm_binaries()
    assert found.encoder == exe
    assert found.decoder != tmp_path / "TAppDecoder"  # not executable, so not taken
    assert found.searched[0] == tmp_path


def test_anchor_pattern_is_detected_only_for_hm_qps() -> None:
    assert anchor_base_qp(hm_anchor_frame_qps(32, 17)) == 32
    assert anchor_base_qp(hm_anchor_frame_qps(22, 5)) == 22
    assert anchor_base_qp(dmic_frame_qps(21, 9)) == 22  # the paper rule equals HM at QP_I 21
    assert anchor_base_qp(dmic_frame_qps(30, 9)) is None
    assert anchor_base_qp(np.array([30, 30, 30])) is None


def test_cfg_has_hm_gop_for_the_anchor_and_flat_gop_otherwise(tmp_path: Path) -> None:
    write_cfg(tmp_path / "a.cfg", anchor=True, extra={"SAO": 0})
    text = (tmp_path / "a.cfg").read_text()
    assert "IntraPeriod" in text and "GOPSize                       : 8" in text
    assert "IntraQPOffset                 : -1" in text and "SAO                           : 0" in text
    frames = [line.split() for line in text.splitlines() if line.startswith("Frame")]
    assert [int(f[3]) for f in frames] == [5, 4, 5, 4, 5, 4, 5, 1]
    assert frames[0][4:6] == ["-6.5", "0.259"] and frames[7][4:6] == ["0.0", "0.0"]
    assert frames[1][12:] == ["4", "4", "-1", "-2", "-10", "-18", "0"]  # 4 refs, no inter-RPS
    write_cfg(tmp_path / "f.cfg", anchor=False, extra={})
    flat = [line.split() for line in (tmp_path / "f.cfg").read_text().splitlines()
            if line.startswith("Frame")]
    assert {f[3] for f in flat} == {"0"} and "IntraQPOffset                 : 0" in (
        tmp_path / "f.cfg").read_text()


def test_hm_log_lines_are_parsed() -> None:
    log = ("POC    1 TId: 0 ( P-SLICE, nQP 40 QP 40 )      10328 bits [Y 38.1 dB    U 0.0 dB"
           "    V 0.0 dB] [ET     1 ] [L0 0 ]\n"
           "POC    0 TId: 0 ( I-SLICE, nQP 31 QP 31 )     123456 bits [Y 45.1 dB    U 0.0 dB"
           "    V 0.0 dB] [ET     2 ] [L0 ] [L1 ]\n"
           " SUMMARY --------------------------------------------------------\n")
    assert parse_hm_log(log) == [(0, "I", 31, 123456), (1, "P", 40, 10328)]


def test_access_units_split_a_stream_into_frames() -> None:
    frames = ct_like_frames(5, 128, 128)
    res = X265Codec(preset="ultrafast").encode(frames, 12, np.array([30, 36, 35, 36, 35]))
    units = split_access_units(res.bitstream)
    assert b"".join(units) == res.bitstream
    assert [8 * len(u) for u in units] == res.bits_per_frame.tolist()


@hm_test
def test_hm_anchor_run_honours_hm_qps() -> None:
    frames = ct_like_frames(9, 128, 128)
    qps = hm_anchor_frame_qps(44, 9)  # coded-QP anchor at base 44 (paper 32 at 12 bits)
    res = HMCodec().encode(frames, 12, qps)
    assert res.params["mode"] == "anchor" and res.params["base_qp"] == 44
    np.testing.assert_array_equal(res.avg_qp, qps)
    assert int(res.bits_per_frame.sum()) == 8 * len(res.bitstream)
    assert res.recon.shape == frames.shape


@hm_test
def test_hm_forces_arbitrary_frame_qps_with_dqp_file() -> None:
    frames = ct_like_frames(5, 128, 128)
    qps = np.array([30, 37, 36, 37, 33])
    res = HMCodec().encode(frames, 12, qps)
    assert res.params["mode"] == "dQPFile"
    np.testing.assert_array_equal(res.avg_qp, qps)
    np.testing.assert_array_equal(HMCodec().decode(res.bitstream, 12), res.recon)


@hm_test
def test_hm_ctu_map_needs_a_modified_hm() -> None:
    frames = ct_like_frames(2, 128, 128)
    offsets = np.zeros((2, *ctu_grid_shape(128, 128)), dtype=np.int64)
    offsets[:, :, 0] = -6
    if not HMCodec.supports_ctu_map():
        with pytest.raises(CodecUnavailableError, match=CTU_MAP_OPTION):
            HMCodec().encode(frames, 12, np.array([34, 38]), offsets)
        return
    flat = HMCodec().encode(frames, 12, np.array([34, 38]))
    mapped = HMCodec().encode(frames, 12, np.array([34, 38]), offsets)
    left = np.s_[:, :, :64]
    err = lambda r: np.mean((r.recon[left].astype(float) - frames[left]) ** 2)  # noqa: E731
    assert err(mapped) < err(flat)


@hm_test
def test_rate_control_is_refused_by_hm() -> None:
    with pytest.raises(CodecUnavailableError, match="rate control"):
        HMCodec().encode(ct_like_frames(1, 64, 64), 12, None, bitrate_kbps=100)

