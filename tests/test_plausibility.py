"""Real-data plausibility of coronary masks: the false-vessel measures on the real CT crop, the
out-of-distribution warnings (plain on the real crop, none on a phantom), and the real-texture
training sampler (never reads the evaluation frames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmic_core.segmentation.plausibility import (FALSE_CATEGORIES, anatomy_regions, assess_mask_plausibility,
                                                 false_vessel_report)
from dmic_core.segmentation.realdata import EVAL_FRAMES, TRAIN_FRAMES, crop_dir

WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "segmenter_unet.pt"
needs_crop = pytest.mark.skipif(not (crop_dir() / "ct.nii.gz").is_file(),
                                reason="real CT crop (../shared/data/cta-aorta-crop) not available")
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="shipped segmenter weights missing")


@pytest.fixture(scope="module")
def crop():
    from dmic_core.segmentation.realdata import load_crop

    return load_crop()


@pytest.fixture(scope="module")
def regions(crop):
    return crop.regions()


def _lung_vessels(crop, regions) -> np.ndarray:
    """Contrast-filled vessels inside the aerated lung: anatomically never coronary."""
    return (regions.lung & (crop.hu > 200)).astype(np.uint8)


def _epicardial_bright(crop, regions) -> np.ndarray:
    """Bright voxels 1-6 mm outside the heart, away from the great vessels: where coronaries run."""
    d = regions.heart_distance
    return ((d > 1) & (d < 6) & (crop.hu > 200) & ~crop.great_vessels & ~regions.lung & ~regions.bone).astype(np.uint8)


@needs_crop
def test_regions_of_the_real_crop(crop, regions):
    ml = float(np.prod(crop.spacing)) / 1000
    assert 300 < regions.lung.sum() * ml < 3000  # both lungs inside a 19 x 18 x 25 cm crop
    assert 20 < regions.bone.sum() * ml < 600  # spine, ribs, sternum
    assert not (regions.bone & crop.great_vessels).any()
    assert not (regions.lung & crop.heart).any()
    assert regions.heart_distance[crop.heart].max() <= 0 < regions.heart_distance[~crop.heart].min()


@needs_crop
def test_false_vessel_report_tells_lung_vessels_from_the_heart_surface(crop, regions):
    lung = false_vessel_report(_lung_vessels(crop, regions), crop.spacing, regions)
    assert set(lung["false_ml"]) == set(FALSE_CATEGORIES)
    assert lung["false_ml"]["lung"] == pytest.approx(lung["mask_ml"])
    assert lung["false_ml"]["far_from_heart"] > 0.5 * lung["mask_ml"]
    assert lung["heart_shell_fraction"] < 0.5
    heart = false_vessel_report(_epicardial_bright(crop, regions), crop.spacing, regions)
    assert heart["mask_ml"] > 1
    assert heart["heart_shell_fraction"] == 1.0 and heart["false_ml"]["far_from_heart"] == 0
    assert heart["false_any_ml"] < 0.05 * heart["mask_ml"]
    # selecting frames splits the volume exactly
    from dmic_core.segmentation.realdata import ABDOMEN_FRAMES

    mask = _lung_vessels(crop, regions)
    parts = [false_vessel_report(mask, crop.spacing, regions, select=crop.frames(r))["mask_ml"]
             for r in (EVAL_FRAMES, TRAIN_FRAMES, ((18, 24), (94, 100)))]
    assert sum(parts) == pytest.approx(lung["mask_ml"])
    assert false_vessel_report(mask, crop.spacing, regions, select=crop.frames((ABDOMEN_FRAMES,)))["mask_ml"] < parts[0]


@needs_crop
def test_report_is_grid_independent(crop, regions):
    """The same mask on a 3x finer z grid gives the same volumes (voxels looked up by position)."""
    mask = _lung_vessels(crop, regions)
    fine = np.repeat(mask, 3, axis=0)  # frames 0.5 mm apart, the first centred 0.5 mm below frame 0's centre
    spacing = (crop.spacing[0] / 3, crop.spacing[1], crop.spacing[2])
    a = false_vessel_report(mask, crop.spacing, regions)
    b = false_vessel_report(fine, spacing, regions, origin_mm=(-0.5, 0.0, 0.0))
    assert b["mask_ml"] == pytest.approx(a["mask_ml"])
    for c in FALSE_CATEGORIES:
        assert b["false_ml"][c] == pytest.approx(a["false_ml"][c], rel=0.02, abs=1e-6)


def test_regions_without_masks_have_no_heart_measures():
    hu = np.full((6, 40, 40), -1000, np.int16)
    hu[:, 5:35, 5:35] = 40
    r = anatomy_regions(hu, (1.0, 1.0, 1.0))
    assert r.heart_distance is None and r.great_vessels is None
    rep = false_vessel_report((hu > 0).astype(np.uint8), (1.0, 1.0, 1.0), r)
    assert rep["false_ml"]["far_from_heart"] is None and rep["heart_shell_fraction"] is None
    assert rep["false_ml"]["outside_body"] == 0


@needs_crop
def test_warnings_on_the_real_crop(crop, regions):
    # the geometry alone is out of distribution, whatever the mask
    warnings = assess_mask_plausibility(crop.volume, _epicardial_bright(crop, regions))
    text = " ".join(warnings)
    assert "Pixel size 1.50 mm" in text and "Slices 1.50 mm apart" in text and "covers 246 mm" in text
    # a mask of lung vessels: far too much, and off the heart (given or estimated)
    bad = _lung_vessels(crop, regions)
    with_heart = " ".join(assess_mask_plausibility(crop.volume, bad, heart=crop.heart))
    assert "a coronary tree holds about 1-12 ml" in with_heart
    assert "farther than 10 mm from the heart" in with_heart
    estimated = " ".join(assess_mask_plausibility(crop.volume, bad))
    assert "from the heart's blood pool (estimated)" in estimated
    # the epicardial mask is on the heart: no off-heart warning
    assert "from the heart" not in text


@needs_crop
@needs_weights
def test_builtin_model_on_the_real_crop_is_warned_about(crop):
    from dmic_core.segmentation import load_segmenter

    mask = load_segmenter("builtin").segment(crop.volume)
    warnings = assess_mask_plausibility(crop.volume, mask, heart=crop.heart)
    assert len(warnings) >= 3 and all(isinstance(w, str) and w.endswith(".") for w in warnings)


@needs_weights
def test_no_warnings_on_a_phantom():
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.segmentation import load_segmenter

    volume, label = generate_phantom(3001, n_slices=128)  # a held-out phantom, 64 mm of the heart
    mask = load_segmenter("builtin").segment(volume)
    assert 1.0 < mask.sum() * np.prod(volume.spacing) / 1000 < 15.0
    assert assess_mask_plausibility(volume, mask) == []
    assert assess_mask_plausibility(volume, label) == []
    # ... but a thick-slice, empty mask of the same scan is warned about
    empty = np.zeros_like(label)
    assert any("only 0.00 ml" in w for w in assess_mask_plausibility(volume, empty))


@needs_crop
def test_real_texture_sampler_reads_only_training_frames(crop):
    from dmic_core.segmentation.composite import RealTextureSampler

    sampler = RealTextureSampler(crop, seed=0, n_patients=3)
    (a, b), = TRAIN_FRAMES
    assert sampler.patients and all(len(p) >= 1 for p in sampler.patients)
    for patient in sampler.patients:
        for cl in patient:
            z = cl.points[:, 0] / crop.spacing[0]
            assert z.min() >= a and z.max() <= b - 1
            assert 0.5 < cl.radius.min() and cl.radius.max() < 2.5
    rng = np.random.default_rng(0)
    found = 0
    for i in range(6):
        img, lab, w = sampler.sample(rng, 3, 96, 1.0, vessel=i % 2 == 0)
        assert img.shape == (3, 96, 96) and lab.shape == w.shape == (96, 96)
        assert set(np.unique(w)) <= {0.0, 1.0} and set(np.unique(lab)) <= {0.0, 1.0}
        if i % 2 == 0:
            found += lab.sum() > 0
            assert (w[lab > 0] == 1).all()  # synthetic vessels always count
            assert np.median(img[1][lab > 0]) > 200
    assert found >= 2


@needs_crop
def test_the_protocol_s_real_ct_slab_is_held_out_frames_of_the_same_crop_in_the_same_order(crop, tmp_path):
    """The evaluation protocol codes the zoomed crop's slab :data:`REAL_CT_SLICES`: those frames must be
    held-out frames of the segmenters' split (never sampled in training) and the zoomed file must keep
    the crop's frame order, or the split would say nothing about the protocol's slab."""
    from dmic_core.io import load_volume
    from dmic_core.protocol.volumes import REAL_CT_SLICES, real_ct_ccta

    first, last = REAL_CT_SLICES
    held_out = crop.frames(EVAL_FRAMES)[:, 0, 0]
    trained = crop.frames(TRAIN_FRAMES)[:, 0, 0]
    assert held_out[first:last].all() and not trained[first:last].any()
    assert crop.heart[first:last].any(), "the slab holds the heart base"
    zoomed = load_volume(real_ct_ccta(tmp_path).image).hu
    assert zoomed.shape[0] == crop.hu.shape[0]
    per_frame = zoomed.reshape(zoomed.shape[0], -1).mean(axis=1)
    original = crop.hu.reshape(crop.hu.shape[0], -1).mean(axis=1)
    assert np.abs(per_frame - original).max() < 5.0  # HU: the same frame, only resampled in-plane
    assert np.corrcoef(per_frame, original)[0, 1] > 0.999
    assert np.abs(per_frame[::-1] - original).max() > 50.0  # reversed order would not match
