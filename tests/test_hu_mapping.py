"""HU <-> sample mapping, window widths vs QP facts, padding and cropping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dmic_core.codecs.qp import qp_shift
from dmic_core.transforms.hu import SampleMapping, ToHUd, ToSamplesd, crop_frames, pad_frames
from dmic_core.volume import HU_MAX, HU_MIN

ALL_HU = np.arange(HU_MIN, HU_MAX + 1, dtype=np.int16)


def test_12_bit_default_is_exact_over_the_whole_range():
    m = SampleMapping(12)
    assert m.window == (-1024.0, 3072.0) and m.levels == 4096 and m.hu_per_level == 1.0
    samples = m.to_samples(ALL_HU)
    assert samples.dtype == np.uint16
    np.testing.assert_array_equal(samples, ALL_HU.astype(np.int32) + 1024)
    back = m.to_hu(samples)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, ALL_HU)


def test_12_bit_clips_outside_the_range():
    m = SampleMapping()
    hu = np.array([-2000, -1025, -1024, 3071, 3072, 5000], dtype=np.int16)
    np.testing.assert_array_equal(m.to_samples(hu), [0, 0, 0, 4095, 4095, 4095])
    assert m.clipped_fraction(hu) == pytest.approx(4 / 6)


def test_8_and_10_bit_defaults_are_the_ccta_window():
    for bits, step in ((8, 4.0), (10, 1.0)):
        m = SampleMapping(bits)
        assert m.window == (-200.0, 824.0) and m.window_hu == 1024.0 and m.hu_per_level == step
    m8 = SampleMapping(8)
    np.testing.assert_array_equal(m8.to_samples(np.array([-201, -200, -197, -196, 823, 824])),
                                  [0, 0, 0, 1, 255, 255])
    # each level decodes to the middle of the 4 HU it holds (rounded up): error at most 2 HU
    inside = np.arange(-200, 824)
    err = m8.to_hu(m8.to_samples(inside)).astype(int) - inside
    assert err.min() == -1 and err.max() == 2
    # 10 bits over a 1024-HU window is exact inside the window
    m10 = SampleMapping(10)
    np.testing.assert_array_equal(m10.to_hu(m10.to_samples(inside)), inside)


def test_qp_shift_consistency():
    # HEVC's quantiser scales with bit depth, so only the window width moves QPs (see qp.py).
    assert qp_shift(12, SampleMapping(12).window_hu) == pytest.approx(-12.0)
    assert qp_shift(8, SampleMapping(8).window_hu) == pytest.approx(0.0)
    assert qp_shift(10, SampleMapping(10).window_hu) == pytest.approx(0.0)
    assert qp_shift(10, SampleMapping(10, (-1024.0, 3072.0)).window_hu) == pytest.approx(-12.0)
    assert qp_shift(8, SampleMapping(8, (-1024.0, 3072.0)).window_hu) == pytest.approx(-12.0)


@pytest.mark.parametrize("kwargs", [dict(bit_depth=9), dict(bit_depth=16), dict(bit_depth=8, window=(100, 100)),
                                    dict(bit_depth=8, window=(100, -100)), dict(bit_depth=12, window=(0, np.inf))])
def test_invalid_mappings(kwargs):
    with pytest.raises(ValueError):
        SampleMapping(**kwargs)


def test_mapping_is_frozen_and_hashable():
    m = SampleMapping(10, (-1024, 3072))
    assert m == SampleMapping(10, (-1024.0, 3072.0)) and hash(m) == hash(SampleMapping(10, (-1024.0, 3072.0)))
    with pytest.raises(AttributeError):
        m.bit_depth = 8  # type: ignore[misc]


windows = st.tuples(st.integers(-1500, 1000), st.integers(64, 4096)).map(lambda t: (float(t[0]), float(t[0] + t[1])))


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from([8, 10, 12]), window=windows,
       hu=hnp.arrays(np.int16, st.integers(2, 200), elements=st.integers(-3000, 4000)))
def test_mapping_is_monotonic_and_in_range(bits, window, hu):
    m = SampleMapping(bits, window)
    hu_sorted = np.sort(hu)
    samples = m.to_samples(hu_sorted)
    assert samples.max() < m.levels
    assert (np.diff(samples.astype(int)) >= 0).all()
    decoded = m.to_hu(samples)
    assert (np.diff(decoded.astype(int)) >= 0).all()
    # inside the window, decoding is within half a level (+ rounding) of the input
    lo, hi = m.window
    inside = (hu_sorted >= lo) & (hu_sorted < hi)
    assert (np.abs(decoded[inside].astype(float) - hu_sorted[inside]) <= m.hu_per_level / 2 + 1).all()
    # decoded levels re-encode to themselves whenever a level holds at least one integer HU
    if m.hu_per_level >= 1:
        np.testing.assert_array_equal(m.to_samples(decoded), samples)


@settings(max_examples=60, deadline=None)
@given(frames=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=21)),
       multiple=st.sampled_from([1, 2, 8, 16]))
def test_pad_then_crop_is_identity(frames, multiple):
    padded = pad_frames(frames, multiple)
    n, h, w = frames.shape
    assert padded.shape[0] == n and padded.shape[1] % multiple == 0 and padded.shape[2] % multiple == 0
    assert h <= padded.shape[1] < h + multiple and w <= padded.shape[2] < w + multiple
    np.testing.assert_array_equal(crop_frames(padded, (h, w)), frames)
    # padding replicates the last row / column
    np.testing.assert_array_equal(padded[:, h:, :w], np.repeat(frames[:, -1:, :], padded.shape[1] - h, axis=1))
    np.testing.assert_array_equal(padded[:, :, w:], np.repeat(padded[:, :, w - 1:w], padded.shape[2] - w, axis=2))


def test_pad_crop_errors():
    with pytest.raises(ValueError):
        pad_frames(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        crop_frames(np.zeros((1, 4, 4)), (5, 4))


def test_dict_transforms_round_trip():
    m = SampleMapping(12)
    hu = np.random.default_rng(0).integers(-1024, 3072, size=(3, 10, 13)).astype(np.int16)
    d = ToSamplesd(["image"], m)({"image": hu, "other": 1})
    assert d["image"].shape == (3, 16, 16) and d["other"] == 1
    back = ToHUd(["image"], m, size=(10, 13))(d)
    np.testing.assert_array_equal(back["image"], hu)
