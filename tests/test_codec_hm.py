"""HM backend: the parts that need no HM always run; real encodes run when HM is installed.

HM is never committed; `bash scripts/setup.sh --with-hm PATH/TO/HM-16.25.tar.gz` builds it with
the project's patch into hm_bin/ (scripts/test.sh does so from ../shared/vendor/ when present).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dmic_core.codecs import get_codec
from dmic_core.codecs.hm import (
    CTU_MAP_OPTION,
    HM_DIR_ENV,
    CTU_TRACE_OPTION,
    HMCodec,
    anchor_base_qp,
    clip_ctu_offsets,
    decode_ctu_qps,
    find_hm_binaries,
    hm_version,
    parse_hm_log,
    read_ctu_qp_trace,
    split_access_units,
    write_cfg,
)
from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps, hm_anchor_frame_qps
from dmic_core.codecs.x265 import X265Codec
from dmic_core.errors import CodecUnavailableError

HM_REASON = HMCodec.availability()
#: The shared vendor tarball from which scripts/test.sh builds HM (CI has it beside the clone).
HM_TARBALL = Path(__file__).resolve().parents[1].parent / "shared" / "vendor" / "HM-16.25.tar.gz"


def hm_test(fn):  # type: ignore[no-untyped-def]
    """Mark a test as needing HM and skip it, with the reason shown, when HM is absent."""
    skip = pytest.mark.skipif(HM_REASON is not None, reason=f"HM absent: {HM_REASON}")
    return pytest.mark.needs_hm(skip(fn))


def test_ci_with_the_hm_tarball_has_hm_built() -> None:
    """In CI (CI=true) with HM's source beside the clone, scripts/test.sh must have built HM."""
    if os.environ.get("CI") != "true" or not HM_TARBALL.is_file():
        pytest.skip("only in CI with ../shared/vendor/HM-16.25.tar.gz present")
    assert HM_REASON is None, HM_REASON
    assert HMCodec.supports_ctu_map()


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


def test_clip_ctu_offsets_keeps_every_ctu_qp_in_range() -> None:
    offsets = np.array([[[-8, 0, 8]], [[-8, 0, 8]]])
    clipped = clip_ctu_offsets(np.array([4, 48]), offsets)
    np.testing.assert_array_equal(clipped, [[[-4, 0, 8]], [[-8, 0, 3]]])


def test_ctu_qp_trace_is_parsed_and_checked(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("0 0 30 1\n0 1 31 1\n1 0 35 0\n1 1 36 1\n")
    qp, coded = read_ctu_qp_trace(trace, 2, 1, 2)
    assert qp.tolist() == [[[30, 31]], [[35, 36]]]
    assert coded.tolist() == [[[True, True]], [[False, True]]]
    trace.write_text("0 0 30 1\n0 1 31 1\n1 0 35 0\n")  # a CTU missing
    with pytest.raises(Exception, match="covers 3 of 4"):
        read_ctu_qp_trace(trace, 2, 1, 2)


def test_hm_version_is_read_from_the_log() -> None:
    assert hm_version("\nHM software: Encoder Version [16.25] (including RExt)[Linux][GCC 12.2.0]"
                      "[64 bit]\n") == "16.25"
    assert hm_version("no banner") is None


def test_anchor_base_whose_frame_qps_exceed_51_is_refused() -> None:
    """Base 44's anchor codes P frames at 44 + 5 + 3 = 52: not a valid HEVC QP."""
    qps = hm_anchor_frame_qps(44, 9)
    assert qps.max() == 52
    with pytest.raises(ValueError, match=r"frame QPs must lie in 0\.\.51, got 43\.\.52"):
        HMCodec().encode(ct_like_frames(9, 64, 64), 12, qps)


@hm_test
def test_hm_anchor_run_honours_hm_qps() -> None:
    frames = ct_like_frames(9, 128, 128)
    qps = hm_anchor_frame_qps(37, 9)  # coded-QP anchor at base 37: I 36, P 44/43, GOP end 38
    assert qps.max() <= 51
    res = HMCodec().encode(frames, 12, qps)
    assert res.params["mode"] == "anchor" and res.params["base_qp"] == 37
    assert res.params["version"] == "16.25"
    np.testing.assert_array_equal(res.avg_qp, qps)
    assert int(res.bits_per_frame.sum()) == 8 * len(res.bitstream)
    np.testing.assert_array_equal(HMCodec().decode(res.bitstream, 12), res.recon)


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


def noise_frames(n: int, height: int, width: int, bit_depth: int, seed: int = 1) -> np.ndarray:
    """Random black/white pixels, independent per frame: every CTU of every frame codes a
    residual even at QP 51, so every CTU carries its own cu_qp_delta (a CTU without residual
    carries the predicted QP, which HEVC then uses instead of the requested one; Gaussian noise
    of 12% of the range was quantised away at QP 44-51 and such CTUs came out skipped)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, (n, height, width)) * (2**bit_depth - 1)).astype(np.uint16)


@hm_test
@pytest.mark.parametrize("bit_depth", [8, 12])
def test_every_ctu_carries_the_requested_qp(bit_depth: int) -> None:
    """Per-CTU QPs read back from the stream by the patched HM decoder equal frame QP + offset.

    192x168 has 3 x 3 CTUs with a partial last row; offsets span -10..10 and two CTUs clip at
    QP 51 (42 + 12) and 0 (30 - 40). The decoder parses each CTU's cu_qp_delta (--CtuQpTraceFile), so this measures
    the stream itself, not the encoder's intentions.
    """
    if not HMCodec.supports_ctu_map():
        pytest.skip(f"HM without --{CTU_MAP_OPTION}: unpatched build")
    n, height, width = 4, 168, 192
    frames = noise_frames(n, height, width, bit_depth)
    qps = np.array([30, 36, 35, 42])
    rows, cols = ctu_grid_shape(height, width)
    rng = np.random.default_rng(bit_depth)
    offsets = rng.integers(-10, 11, size=(n, rows, cols))
    offsets[3, 0, 0] = 12   # 42 + 12 -> clipped to 51
    offsets[0, 2, 2] = -40  # 30 - 40 -> clipped to 0
    res = HMCodec().encode(frames, bit_depth, qps, offsets)
    want = np.clip(qps[:, None, None] + offsets, 0, 51)
    assert want[3, 0, 0] == 51 and want[0, 2, 2] == 0
    coded_qp, dqp_coded = decode_ctu_qps(res.bitstream, n, height, width)
    assert dqp_coded.all(), f"CTUs without cu_qp_delta: {np.argwhere(~dqp_coded).tolist()}"
    np.testing.assert_array_equal(coded_qp, want)
    assert res.params["avg_qp_from"] == "stream"
    np.testing.assert_allclose(res.avg_qp, want.reshape(n, -1).mean(axis=1))
    np.testing.assert_array_equal(HMCodec().decode(res.bitstream, bit_depth), res.recon)
    # without a map the same content carries the slice QP in every CTU (no cu_qp_delta at all)
    flat = HMCodec().encode(frames, bit_depth, qps)
    flat_qp, flat_coded = decode_ctu_qps(flat.bitstream, n, height, width)
    assert not flat_coded.any()
    np.testing.assert_array_equal(flat_qp, np.broadcast_to(qps[:, None, None], flat_qp.shape))


@hm_test
def test_patched_decoder_lists_the_trace_option() -> None:
    decoder = find_hm_binaries().decoder
    if decoder is None or not HMCodec.supports_ctu_map():
        pytest.skip("unpatched HM")
    from dmic_core.codecs.hm import encoder_help

    assert CTU_TRACE_OPTION in encoder_help(decoder)


@hm_test
def test_hm_and_x265_code_the_same_map_the_same_way_on_i_frames() -> None:
    """x265 with the same map: its I-frame average QP equals HM's stream-measured one."""
    if not HMCodec.supports_ctu_map():
        pytest.skip("unpatched HM")
    n, height, width = 1, 128, 192
    frames = noise_frames(n, height, width, 12, seed=3)
    offsets = np.array([[[-4, 0, 6], [2, -2, 8]]])
    qps = np.array([32])
    hm = HMCodec().encode(frames, 12, qps, offsets)
    x265 = X265Codec(preset="ultrafast").encode(frames, 12, qps, offsets)
    np.testing.assert_allclose(hm.avg_qp, [32 + offsets.mean()])
    np.testing.assert_allclose(x265.avg_qp, hm.avg_qp, atol=0.01)


@hm_test
def test_rate_control_is_refused_by_hm() -> None:
    with pytest.raises(CodecUnavailableError, match="rate control"):
        HMCodec().encode(ct_like_frames(1, 64, 64), 12, None, bitrate_kbps=100)





@hm_test
@pytest.mark.parametrize("codec", ["hm", "x265"])
def test_compress_cli_codes_with_the_chosen_engine_and_records_it(
        codec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``dmic compress --codec`` picks the engine; result.json names it and its version."""
    import json

    from dmic_core.cli import main
    from dmic_core.defaults import shared_data_dir

    ct = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
    if not ct.is_file():
        pytest.skip(f"shared data absent: {ct}")
    out = tmp_path / codec
    code = main(["compress", str(ct), "--method", "hevc", "--qp", "32", "--slices", "70:79",
                 "--codec", codec, "--out", str(out)])
    capsys.readouterr()
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["codec"] == codec and result["summary"]["codec"] == codec
    version = result["codec_version"]
    assert version == ("16.25" if codec == "hm" else result["summary"]["codec_params"]["x265_version"])
    assert result["summary"]["codec_version"] == version
    assert result["bits"] == 8 * (out / "stream.hevc").stat().st_size


def test_a_preset_with_hm_is_refused() -> None:
    from dmic_core.pipeline import CodingSetup

    with pytest.raises(ValueError, match="x265 only"):
        CodingSetup(codec="hm", preset="slow").make_codec()
