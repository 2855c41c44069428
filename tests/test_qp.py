"""QP facts of dmic_core.codecs.qp against the numbers in HM's LDP configuration and the paper."""

from __future__ import annotations

import numpy as np
import pytest

from dmic_core.codecs.qp import (
    absolute_qp_map,
    coded_to_paper_qp,
    ctu_grid_shape,
    dmic_frame_qps,
    hm_anchor_frame_qps,
    p_frame_delta,
    paper_to_coded_qp,
    qp_shift,
)


@pytest.mark.parametrize(("base", "i_qp", "gop"), [
    (22, 21, [27, 26, 27, 26, 27, 26, 27, 23]),
    (32, 31, [40, 39, 40, 39, 40, 39, 40, 33]),
])
def test_hm_anchor_pattern_matches_encoder_lowdelay_p_main(base: int, i_qp: int,
                                                           gop: list[int]) -> None:
    qps = hm_anchor_frame_qps(base, 17)
    assert qps[0] == i_qp
    assert qps[1:9].tolist() == gop and qps[9:17].tolist() == gop  # the GOP repeats


def test_paper_rule_bands_and_gop_loop() -> None:
    assert [p_frame_delta(q) for q in (14, 21, 22, 29, 30, 37)] == [6, 6, 7, 7, 8, 8]
    qps = dmic_frame_qps(30, 10)
    assert qps.tolist() == [30, 38, 37, 38, 37, 38, 37, 38, 32, 38]
    assert dmic_frame_qps(22, 1).tolist() == [22]
    with pytest.raises(ValueError):
        dmic_frame_qps(22, 0)


def test_paper_rule_reproduces_hm_at_qp_i_21() -> None:
    np.testing.assert_array_equal(dmic_frame_qps(21, 33), hm_anchor_frame_qps(22, 33))


def test_full_range_mapping_subtracts_12_and_clips_to_codec_range() -> None:
    # The HU step depends on the window width only (HEVC scales its quantiser with bit depth).
    assert qp_shift(12, 4096.0) == pytest.approx(-12.0)
    assert qp_shift(10, 4096.0) == pytest.approx(-12.0)
    assert qp_shift(8, 1024.0) == pytest.approx(0.0)
    assert qp_shift(12, 1024.0) == pytest.approx(0.0)
    assert paper_to_coded_qp([10, 22, 27, 32, 37, 53, 70], 12, 4096.0).tolist() == [0, 10, 15, 20, 25, 41, 51]
    assert coded_to_paper_qp(10, 12, 4096.0) == pytest.approx(22.0)
    with pytest.raises(ValueError):
        qp_shift(9, 4096.0)
    with pytest.raises(ValueError):
        qp_shift(12, 0.0)


def test_ctu_grid_counts_partial_ctus_and_absolute_map_checks_shape() -> None:
    assert ctu_grid_shape(512, 512) == (8, 8)
    assert ctu_grid_shape(136, 200) == (3, 4)
    qmap = absolute_qp_map(np.array([30, 36]), np.full((2, 3, 4), -2), 136, 200)
    assert qmap.shape == (2, 3, 4) and qmap[1, 2, 3] == 34
    assert absolute_qp_map(np.array([30]), None, 64, 64).tolist() == [[[30]]]
    with pytest.raises(ValueError, match="shape"):
        absolute_qp_map(np.array([30]), np.zeros((1, 2, 2)), 64, 64)
