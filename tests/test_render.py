"""The plotly slice view's cursor readout (dmic_core.render.heatmap_figure): the value under the
cursor is the voxel's own HU at the position in mm the readout states."""

from __future__ import annotations

import numpy as np

from dmic_core.render import heatmap_figure, take_slice


def test_readout_gives_each_voxels_hu_at_its_position_in_mm():
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 2000, (6, 40, 50)).astype(np.int16)
    spacing = (2.0, 0.5, 0.8)  # z, y, x mm
    for plane, row_mm, col_mm in (("axial", 0.5, 0.8), ("coronal", 2.0, 0.8), ("sagittal", 2.0, 0.5)):
        values = take_slice(hu, plane, 3)
        trace = heatmap_figure(values, plane, spacing, zmin=-100, zmax=500, hover_note="n").data[0]
        z = np.asarray(trace.z)
        assert np.array_equal(z, values)
        assert np.allclose(trace.x, np.arange(values.shape[1]) * col_mm)
        assert np.allclose(trace.y, np.arange(values.shape[0]) * row_mm)
        assert trace.hovertemplate == "%{z:.0f} HU<br>x %{x:.1f} mm, y %{y:.1f} mm<br>n<extra></extra>"


def test_subsampled_view_reads_the_shown_voxel_at_its_true_position():
    hu = np.arange(700 * 700, dtype=np.float32).reshape(1, 700, 700)
    trace = heatmap_figure(hu[0], "axial", (1.0, 0.4, 0.3), zmin=0, zmax=1, max_pixels=320).data[0]
    z, xs, ys = np.asarray(trace.z), np.asarray(trace.x), np.asarray(trace.y)
    assert z.shape == (234, 234)  # every third voxel
    for r, c in ((0, 0), (17, 200), (233, 5)):
        row, col = int(round(ys[r] / 0.4)), int(round(xs[c] / 0.3))
        assert z[r, c] == hu[0, row, col]
