"""Synthetic CCTA phantoms: determinism, ImageCAS-like geometry, plausible HU, noise and labels."""

from __future__ import annotations

import json
from functools import lru_cache

import nibabel as nib
import numpy as np
import pytest

from dmic_core.cli import main as dmic_main
from dmic_core.datasets.phantom import (
    TISSUE_CLASSES,
    PhantomConfig,
    PhantomResult,
    generate_phantom,
    render_phantom,
    write_imagecas_pair,
)

SLICES = 48


@lru_cache(maxsize=4)
def _phantom(seed: int) -> PhantomResult:
    return render_phantom(PhantomConfig.from_seed(seed, SLICES), with_tissue=True)


def _lps_to_index(volume, point_lps) -> tuple[int, int, int]:
    """Canonical (z, y, x) voxel index of an LPS point (the phantom's file grid is canonical)."""
    ijk = np.linalg.inv(volume.affine) @ np.array([-point_lps[0], -point_lps[1], point_lps[2], 1.0])
    x, y, z = np.rint(ijk[:3]).astype(int)
    return int(z), int(y), int(x)


def test_same_seed_gives_identical_arrays():
    a_vol, a_lab = generate_phantom(3, SLICES)
    b = _phantom(3)
    np.testing.assert_array_equal(a_vol.hu, b.volume.hu)
    np.testing.assert_array_equal(a_lab, b.label)
    assert a_vol.spacing == b.volume.spacing


def test_different_seeds_differ():
    a, b = _phantom(3), _phantom(4)
    assert a.config != b.config
    same_shape = a.volume.shape == b.volume.shape
    assert not same_shape or not np.array_equal(a.volume.hu, b.volume.hu)
    assert not same_shape or not np.array_equal(a.label, b.label)


def test_slice_count_override_keeps_the_anatomy():
    """``n_slices`` only crops/extends along z: every other parameter is the seed's."""
    full = PhantomConfig.from_seed(5)
    short = PhantomConfig.from_seed(5, SLICES)
    assert short.n_slices == SLICES
    assert {k: v for k, v in vars(full).items() if k != "n_slices"} == \
        {k: v for k, v in vars(short).items() if k != "n_slices"}


@pytest.mark.parametrize("seed", range(40))
def test_drawn_geometry_is_imagecas_like(seed):
    cfg = PhantomConfig.from_seed(seed)
    assert 0.30 <= cfg.spacing_xy <= 0.45
    assert cfg.spacing_z == 0.5
    assert 128 <= cfg.n_slices <= 275
    assert cfg.size == 512


def test_volume_geometry_and_dtypes():
    r = _phantom(3)
    vol, lab = r.volume, r.label
    assert vol.shape == (SLICES, 512, 512) == lab.shape
    assert vol.hu.dtype == np.int16 and lab.dtype == np.uint8
    assert set(np.unique(lab)) <= {0, 1}
    assert vol.hu.min() >= -1024 and vol.hu.max() <= 3071
    sz, sy, sx = vol.spacing
    assert sz == 0.5 and sy == sx and 0.30 <= sx <= 0.45
    assert vol.meta["phantom"]["config"]["seed"] == 3
    assert np.allclose(np.abs(np.diag(vol.affine)[:3]), [sx, sy, sz])


@pytest.mark.parametrize("seed", [3, 4])
def test_label_fraction_and_contrast(seed):
    r = _phantom(seed)
    fraction = float(r.label.mean())
    assert 3e-4 < fraction < 1e-2, fraction
    assert np.median(r.volume.hu[r.label > 0]) > 200


def test_vessels_span_consecutive_slices():
    r = _phantom(3)
    per_slice = r.label.reshape(SLICES, -1).sum(axis=1)
    assert (per_slice > 0).all(), "the mid-heart slab should show coronaries on every slice"


def test_coronary_ctus_are_a_minority_of_heart_slices():
    lab = _phantom(3).label
    ctus = lab.reshape(SLICES, 8, 64, 8, 64).max(axis=(2, 4))
    share = ctus.reshape(SLICES, -1).mean(axis=1)
    assert 0.03 < float(np.median(share)) < 0.4


@pytest.mark.parametrize("seed", [3, 4])
def test_tissue_hu_ranges(seed):
    r = _phantom(seed)
    hu, tissue = r.volume.hu, r.tissue
    median = lambda name: float(np.median(hu[tissue == TISSUE_CLASSES[name]]))  # noqa: E731
    assert median("lung") < -700
    assert -150 < median("fat") < -40
    assert 40 < median("myocardium") < 180
    assert 250 < median("aorta") < 600
    assert median("blood") > 120
    bone = hu[tissue == TISSUE_CLASSES["bone"]]
    assert np.percentile(bone, 90) > 300


@pytest.mark.parametrize("seed", [3, 4])
def test_noise_std_in_the_left_ventricle(seed):
    r = _phantom(seed)
    vol = r.volume
    z, y, x = _lps_to_index(vol, r.landmarks["lv_center_lps"])
    z = int(np.clip(z, 4, SLICES - 5))
    half = int(round(4.0 / vol.spacing[1]))
    roi = vol.hu[z - 4:z + 5, y - half:y + half, x - half:x + half].astype(float)
    assert (r.tissue[z - 4:z + 5, y - half:y + half, x - half:x + half] == TISSUE_CLASSES["blood"]).mean() > 0.95
    assert 15 < roi.std() < 45, roi.std()


def test_write_imagecas_pair_roundtrip(tmp_path):
    r = _phantom(3)
    img_path, label_path = write_imagecas_pair(r.volume, r.label, tmp_path, "case-0001")
    assert img_path.name == "case-0001.img.nii.gz" and label_path.name == "case-0001.label.nii.gz"
    img, lab = nib.load(img_path), nib.load(label_path)
    assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
    assert img.shape == lab.shape and np.allclose(img.affine, lab.affine)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    data = np.asarray(img.dataobj)
    np.testing.assert_array_equal(data.transpose(2, 1, 0), r.volume.hu)
    np.testing.assert_array_equal(np.asarray(lab.dataobj).transpose(2, 1, 0), r.label)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_writes_loadable_pairs(tmp_path, capsys):
    code = dmic_main(["phantom", "--seed", "7", "--out", str(tmp_path), "--slices", "16", "--count", "2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["case_id"] for c in report["cases"]] == ["phantom-0007", "phantom-0008"]
    for case in report["cases"]:
        img, lab = nib.load(case["image"]), nib.load(case["label"])
        assert img.shape == lab.shape == (512, 512, 16)
        assert np.allclose(img.affine, lab.affine)
        assert np.allclose(img.header.get_zooms(), case["spacing_zyx_mm"][::-1])
        assert case["shape_zyx"] == [16, 512, 512]
        assert 0 <= case["label_fraction"] < 0.05


def test_cli_rejects_bad_count(tmp_path, capsys):
    assert dmic_main(["phantom", "--seed", "1", "--out", str(tmp_path), "--count", "0"]) == 2
    assert "count" in capsys.readouterr().err


# ------------------------------------------------------------------------- real-CT confounders
def test_phantom_options_parse():
    from dmic_core.datasets.phantom import PhantomOptions

    assert PhantomOptions.parse(None) == PhantomOptions() and PhantomOptions().enabled() == []
    assert PhantomOptions.parse("all") == PhantomOptions.all()
    assert PhantomOptions.parse("motion_blur, real_noise").enabled() == ["motion_blur", "real_noise"]
    with pytest.raises(ValueError, match="unknown phantom option"):
        PhantomOptions.parse("lung_vessel_trees,fog")


def test_confounder_options_change_the_image_not_the_label():
    from dmic_core.datasets.phantom import TISSUE_CLASSES, PhantomConfig, PhantomOptions, render_phantom

    cfg = PhantomConfig.from_seed(3, size=128)  # seed 3: dense SVC contrast (831 HU), so it streaks
    base = render_phantom(cfg, with_tissue=True)
    assert "options" not in base.volume.meta["phantom"]
    changed = {}
    for name in PhantomOptions().__dataclass_fields__:
        res = render_phantom(cfg, with_tissue=True, options=PhantomOptions(**{name: True}))
        assert np.array_equal(res.label, base.label), name
        assert res.volume.meta["phantom"]["options"] == [name]
        changed[name] = float(np.abs(res.volume.hu.astype(np.int32) - base.volume.hu).mean())
        if name == "lung_vessel_trees":
            lung = TISSUE_CLASSES["lung"]
            assert (res.tissue == lung).sum() < (base.tissue == lung).sum()  # vessels took lung voxels
            assert (res.tissue == TISSUE_CLASSES["blood"]).sum() > (base.tissue == TISSUE_CLASSES["blood"]).sum()
    assert all(v > 0.05 for v in changed.values()), changed
