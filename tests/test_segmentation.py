"""The diagnosis task's model: U-Net shapes and arguments, shipped weights, accuracy on a held-out
phantom, the ground-truth and TorchScript segmenters, the ``dmic segment`` CLI, and that strong
x265 coding costs accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from dmic_core.errors import DmicInputError
from dmic_core.segmentation import GroundTruthSegmenter, Segmenter, load_segmenter
from dmic_core.segmentation.unet import HU_WINDOW, UNet25D, fuse_conv_bn, normalize_hu, slice_stack

ASSETS = Path(__file__).resolve().parents[1] / "assets"
WEIGHTS = ASSETS / "segmenter_unet.pt"
#: A held-out phantom (test split of the model card: never trained or validated on).
TEST_SEED = 3000

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="shipped segmenter weights missing")

UNET_CASES = [
    (dict(in_slices=1, channels=(4, 8), stem_factor=1), (2, 1, 32, 48)),
    (dict(in_slices=3, channels=(8, 16, 16), stem_factor=2), (1, 3, 64, 32)),
    (dict(in_slices=5, channels=(4, 8, 8, 8), stem_factor=4), (3, 5, 128, 64)),
]


# ----------------------------------------------------------------------------------------- U-Net
@pytest.mark.parametrize("kwargs,shape", UNET_CASES)
def test_unet_output_shape(kwargs, shape):
    net = UNet25D(**kwargs).eval()
    with torch.inference_mode():
        y = net(torch.rand(shape))
    assert y.shape == (shape[0], 1, shape[2], shape[3])
    assert net.size_multiple == kwargs["stem_factor"] * 2 ** (len(kwargs["channels"]) - 1)
    assert UNet25D(**net.config()).config() == net.config()


@pytest.mark.parametrize("kwargs", [
    dict(in_slices=2), dict(in_slices=0), dict(channels=(16,)), dict(channels=(16, 0)),
    dict(channels=(16, 2.5)), dict(stem_factor=3),
])
def test_unet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet25D(**kwargs)


def test_batchnorm_folding_keeps_outputs():
    torch.manual_seed(0)
    net = UNet25D(3, (8, 16), 2)
    net.train()
    net(torch.rand(4, 3, 32, 32))  # move BN running stats off their defaults
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        ref = net(x)
        fused = fuse_conv_bn(net)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(ref, fused, atol=1e-4)


def test_normalisation_window_and_slice_stack():
    t = normalize_hu(np.array([HU_WINDOW[0] - 500, HU_WINDOW[0], HU_WINDOW[1], 3000], dtype=np.int16))
    assert t.tolist() == [0.0, 0.0, 1.0, 1.0]
    frames = torch.arange(4.0).view(4, 1, 1)
    stack = slice_stack(frames, [0, 3], 3)[..., 0, 0]
    assert stack.tolist() == [[0, 0, 1], [2, 3, 3]]  # edges repeat


# ---------------------------------------------------------------------------------- segmenters
def test_ground_truth_passthrough():
    label = np.zeros((3, 8, 8), dtype=np.uint8)
    label[1, 2:4, 2:4] = 2
    seg = load_segmenter("gt", label=label)
    assert isinstance(seg, GroundTruthSegmenter) and isinstance(seg, Segmenter)
    mask = seg.segment(np.zeros((3, 8, 8), dtype=np.int16))
    assert mask.dtype == np.uint8 and mask.sum() == 4 and mask.max() == 1
    assert seg.probabilities(np.zeros((3, 8, 8), dtype=np.int16)).dtype == np.float32
    with pytest.raises(DmicInputError):
        seg.segment(np.zeros((4, 8, 8), dtype=np.int16))
    with pytest.raises(DmicInputError):
        load_segmenter("gt")


def test_unknown_segmenter_spec(tmp_path):
    with pytest.raises(DmicInputError):
        load_segmenter("no-such-model")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(DmicInputError):
        load_segmenter(junk)


@needs_weights
def test_shipped_weights_load_and_are_small():
    from dmic_core.segmentation.builtin import UNetSegmenter, load_weights

    assert WEIGHTS.stat().st_size < 4 * 2**20
    net, meta = load_weights(WEIGHTS)
    assert meta["hu_window"] == list(HU_WINDOW)
    assert meta["val"]["dice"] >= 0.85
    seg = load_segmenter("builtin")
    assert isinstance(seg, UNetSegmenter) and seg.in_slices == net.in_slices
    mask = seg.segment(np.full((2, 40, 56), -100, dtype=np.int16))  # odd size: padded and cropped
    assert mask.shape == (2, 40, 56) and mask.dtype == np.uint8


# --------------------------------------------------------------------- phantom-based behaviour
@pytest.fixture(scope="module")
def phantom_slab():
    """16 frames through the coronary tree of a held-out phantom (Volume, label)."""
    from dmic_core.datasets.phantom import generate_phantom

    volume, label = generate_phantom(TEST_SEED, n_slices=20)  # mid-heart: the anatomy is centred
    return volume.slab(2, 18), (label[2:18] > 0).astype(np.uint8)


@needs_weights
def test_builtin_dice_on_held_out_phantom(phantom_slab):
    from dmic_core.metrics.task import segmentation_scores

    volume, label = phantom_slab
    scores = segmentation_scores(load_segmenter("builtin").segment(volume), label)
    assert scores["dice"] >= 0.85, scores


@needs_weights
def test_batch_size_and_allocator_do_not_change_the_mask(phantom_slab):
    """Batch size and the allocator thresholds are speed knobs (issue 17): the probabilities are
    bit-identical at 1, 2, 5 and 8 frames per pass, with and without ``configure_allocator``."""
    from dmic_core.runtime import configure_allocator
    from dmic_core.segmentation.builtin import UNetSegmenter

    volume, _ = phantom_slab
    ref = UNetSegmenter(batch_size=8).probabilities(volume)
    assert ref.max() > 0.5  # the slab holds vessel: the comparison is not between empty maps
    configure_allocator()
    for batch in (1, 2, 5):
        assert np.array_equal(UNetSegmenter(batch_size=batch).probabilities(volume), ref), batch


@needs_weights
@pytest.mark.skipif(not (ASSETS / "segmenter_lite.pt").is_file(), reason="shipped lite segmenter weights missing")
@needs_weights
@pytest.mark.skipif(not (ASSETS / "segmenter_lite.pt").is_file(), reason="shipped lite segmenter weights missing")
def test_named_segmenters_say_why_they_cannot_run(monkeypatch, tmp_path):
    """Every named model is either runnable here or has a reason a person can act on: the weights
    file it needs, or the CPU feature bf16 needs (the app offers exactly the runnable ones)."""
    from dmic_core.segmentation import builtin
    from dmic_core.segmentation.config import NAMED_WEIGHTS
    from dmic_core.segmentation.registry import named_segmenter_unavailable

    assert named_segmenter_unavailable("builtin") is None
    assert named_segmenter_unavailable("builtin-lite") is None
    bf16 = named_segmenter_unavailable("builtin-bf16")
    assert (bf16 is None) == builtin.cpu_has_native_bf16()
    monkeypatch.setattr(builtin, "cpu_has_native_bf16", lambda: False)
    assert "native bf16" in named_segmenter_unavailable("builtin-bf16")
    import dmic_core.assets

    monkeypatch.setattr(dmic_core.assets, "ASSETS_DIR", tmp_path)  # an install without the shipped weights
    for name in NAMED_WEIGHTS:
        reason = named_segmenter_unavailable(name)
        assert reason is not None and NAMED_WEIGHTS[name] in reason, (name, reason)


def test_lite_segmenter_is_its_own_model_and_accurate_on_a_held_out_phantom(phantom_slab):
    """``builtin-lite`` (issue 17) is another model, not a speed setting of the default: its own
    weights, a name of its own in every log and cache key, a quarter of the default's work per frame,
    and a usable mask of the held-out phantom. On this 16-frame slab it scores Dice 0.80 against the
    default's 0.90 (it under-segments here; over the 10 held-out test volumes the two are equal, model
    card), hence a lower bar than the default's test."""
    from torch.utils.flop_counter import FlopCounterMode

    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.segmentation.builtin import load_weights

    volume, label = phantom_slab
    default, lite = load_segmenter("builtin"), load_segmenter("builtin-lite")
    assert (default.name, lite.name) == ("builtin-unet", "builtin-unet-lite")
    assert lite.weights_path.name == "segmenter_lite.pt"
    macs = {}
    for name in ("segmenter_unet.pt", "segmenter_lite.pt"):
        net, _ = load_weights(ASSETS / name)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net(torch.zeros(1, net.in_slices, 256, 256))
        macs[name] = counter.get_total_flops()
    assert macs["segmenter_lite.pt"] <= 0.3 * macs["segmenter_unet.pt"]
    lite_mask = lite.segment(volume)
    assert not np.array_equal(lite_mask, default.segment(volume))  # another model, not the default again
    assert segmentation_scores(lite_mask, label)["dice"] >= 0.75


def test_other_weights_never_pass_for_the_shipped_model(tmp_path):
    """Weights loaded from any other file are named after it (results and caches keyed by the name
    never mix them with the shipped model's); an explicit name wins; the default keeps its name."""
    from dmic_core.segmentation.builtin import UNetSegmenter, save_weights

    path = tmp_path / "mine.pt"
    save_weights(UNet25D(3, (4, 8), 2), path)
    assert load_segmenter(str(path)).name == "unet:mine.pt"
    assert UNetSegmenter(path, name="candidate").name == "candidate"
    assert UNetSegmenter(UNet25D(3, (4, 8), 2)).name == "unet"
    if WEIGHTS.is_file():
        assert UNetSegmenter().name == UNetSegmenter(WEIGHTS).name == "builtin-unet"


@needs_weights
def test_bfloat16_segmenter_is_close_to_float32_and_says_it_differs(phantom_slab):
    """``builtin-bf16`` is a speed option (issue 17), not a new model: its mask agrees with the
    float32 mask almost everywhere and scores the same against the label, and its name differs,
    so logs and cache keys never mix its results with float32 ones."""
    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.segmentation.builtin import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: the segmenter refuses to run (tested below)")
    volume, label = phantom_slab
    fp32, bf16 = load_segmenter("builtin"), load_segmenter("builtin-bf16")
    m32, m16 = fp32.segment(volume), bf16.segment(volume)
    assert bf16.name != fp32.name
    assert m32.sum() > 100  # the slab holds vessel
    assert (m32 != m16).mean() < 1e-3
    assert segmentation_scores(m16, m32)["dice"] > 0.98
    assert abs(segmentation_scores(m16, label)["miou"] - segmentation_scores(m32, label)["miou"]) < 0.01


def test_precision_is_checked():
    from dmic_core.segmentation.builtin import UNetSegmenter, cpu_has_native_bf16

    net = UNet25D(3, (4, 8), 2).eval()
    with pytest.raises(ValueError, match="precision"):
        UNetSegmenter(net, precision="float16")
    if not cpu_has_native_bf16():
        with pytest.raises(DmicInputError, match="native bf16"):
            UNetSegmenter(net, precision="bfloat16")
    else:
        assert UNetSegmenter(net, precision="bfloat16").name.endswith("-bf16")


@needs_weights
def test_torchscript_round_trip(tmp_path, phantom_slab):
    from dmic_core.segmentation.builtin import load_weights
    from dmic_core.segmentation.torchscript import TorchScriptSegmenter, export_torchscript

    volume, _label = phantom_slab
    sub = volume.slab(6, 9)
    net, _meta = load_weights(WEIGHTS)
    path = export_torchscript(net, tmp_path / "user_model.pt")
    seg = load_segmenter(path)
    assert isinstance(seg, TorchScriptSegmenter) and seg.in_slices == net.in_slices
    builtin = load_segmenter("builtin")
    p_script, p_builtin = seg.probabilities(sub), builtin.probabilities(sub)
    assert np.abs(p_script - p_builtin).max() < 1e-3
    assert (seg.segment(sub) != (p_builtin >= 0.5)).mean() < 1e-4


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")
def test_torchscript_contract_violations(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, :4]  # wrong spatial size

    path = tmp_path / "bad.pt"
    torch.jit.save(torch.jit.script(Bad()), str(path))
    with pytest.raises(DmicInputError, match="expected"):
        load_segmenter(path).segment(np.zeros((2, 16, 16), dtype=np.int16))


@needs_weights
def test_cli_segment_writes_mask_on_input_grid(tmp_path, phantom_slab, capsys):
    from dmic_core.cli import main
    from dmic_core.io import save_nifti

    volume, label = phantom_slab
    sub = volume.slab(4, 12)
    # store it in a non-canonical (RAS, z-flipped) file order to prove the mask comes back on it
    data = np.ascontiguousarray(sub.hu.transpose(2, 1, 0)[::-1, ::-1, ::-1])
    aff = sub.affine.copy()
    aff = aff @ np.array([[-1, 0, 0, sub.file_shape[0] - 1], [0, -1, 0, sub.file_shape[1] - 1],
                          [0, 0, -1, sub.file_shape[2] - 1], [0, 0, 0, 1]], dtype=float)
    image = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), image)
    lab_path = tmp_path / "label.nii.gz"
    from dmic_core.io import load_volume

    loaded = load_volume(image)
    assert np.array_equal(loaded.hu, sub.hu)
    save_nifti(loaded, label[4:12], lab_path)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(image), "--out", str(out), "--label", str(lab_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    written = nib.load(out)
    assert written.shape == data.shape and np.allclose(written.affine, aff)
    mask = np.asarray(written.dataobj)
    assert mask.dtype == np.uint8 and report["voxels"] == int(mask.sum()) > 0
    assert 0 < report["fraction"] < 0.1 and report["seconds"] >= 0
    assert report["scores"]["dice"] > 0.8
    # the file-order mask overlays the file-order label
    lab_file = np.asarray(nib.load(lab_path).dataobj)
    assert 2 * (mask & lab_file).sum() / (mask.sum() + lab_file.sum()) == pytest.approx(report["scores"]["dice"])
    assert main(["segment", str(image), "--out", str(tmp_path / "mask.png")]) == 2


@needs_weights
def test_strong_compression_costs_accuracy(phantom_slab):
    from dmic_core.codecs.qp import hm_anchor_frame_qps
    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.pipeline import CodingSetup, code_volume

    volume, label = phantom_slab
    # a 9-frame, 192 x 192 window around the vessels keeps the encode to a fraction of a second
    z0 = 4
    ys, xs = np.nonzero(label[z0 + 4])
    cy = int(np.clip(int(np.median(ys)), 96, volume.shape[1] - 96))
    cx = int(np.clip(int(np.median(xs)), 96, volume.shape[2] - 96))
    hu = volume.hu[z0:z0 + 9, cy - 96:cy + 96, cx - 96:cx + 96]
    lab = label[z0:z0 + 9, cy - 96:cy + 96, cx - 96:cx + 96]
    from dmic_core.io.orientation import canonical_volume

    crop = canonical_volume(hu, volume.spacing)
    seg = load_segmenter("builtin")
    setup = CodingSetup(bit_depth=12, window=(-1024.0, 3072.0))
    dice = {}
    for qp in (17, 42):
        coded = code_volume(crop, frame_qps=hm_anchor_frame_qps(qp, crop.n_frames), setup=setup)
        dice[qp] = segmentation_scores(seg.segment(coded.recon), lab)["dice"]
    assert dice[17] > 0.8
    assert dice[42] < dice[17] - 0.05, dice


# ------------------------------------------------------------------------------- right scale
def _block_mean(a: np.ndarray, fz: int, fy: int, fx: int) -> np.ndarray:
    z, y, x = (n // f * f for n, f in zip(a.shape, (fz, fy, fx)))
    a = np.asarray(a[:z, :y, :x], np.float32)
    return a.reshape(z // fz, fz, y // fy, fy, x // fx, fx).mean((1, 3, 5))


@pytest.fixture(scope="module")
def fine_and_coarse():
    """The same held-out anatomy at CCTA geometry (~0.3 mm pixels, 0.5 mm frames) and as a
    thick-slice scan (4 x 4 x 3 voxel blocks averaged: ~1.2 mm pixels, 1.5 mm frames)."""
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io.orientation import canonical_volume

    volume, label = generate_phantom(TEST_SEED, n_slices=24)
    sz, sy, sx = volume.spacing
    coarse = canonical_volume(np.rint(_block_mean(volume.hu, 3, 4, 4)).astype(np.int16), (3 * sz, 4 * sy, 4 * sx))
    return volume, (label > 0).astype(np.uint8), coarse


@needs_weights
def test_same_anatomy_at_two_scales_gives_the_same_mask(fine_and_coarse):
    from dmic_core.metrics.task import segmentation_scores

    fine, _label, coarse = fine_and_coarse
    seg = load_segmenter("builtin")
    assert seg.z_factor_for(coarse) == pytest.approx(3.0) and seg.zoom_for(coarse) > 3.0
    assert seg.z_factor_for(fine) == 1.0 and seg.zoom_for(fine) == 1.0
    m_fine = seg.segment(fine)
    m_coarse = seg.segment(coarse)
    assert m_coarse.shape == coarse.shape and m_coarse.dtype == np.uint8
    reduced = (_block_mean(m_fine, 3, 4, 4) >= 0.5).astype(np.uint8)
    dice = segmentation_scores(m_coarse, reduced)["dice"]
    ml_fine = m_fine.sum() * np.prod(fine.spacing) / 1000
    ml_coarse = m_coarse.sum() * np.prod(coarse.spacing) / 1000
    assert dice >= 0.75, dice
    assert 0.7 < ml_coarse / ml_fine < 1.4, (ml_fine, ml_coarse)
    # without resampling the thick-slice scan is segmented wrongly: the check above can fail
    seg.resample = False
    assert segmentation_scores(seg.segment(coarse), reduced)["dice"] < dice - 0.3


def test_resampled_inference_returns_the_input_grid():
    from dmic_core.io.orientation import canonical_volume
    from dmic_core.segmentation import UNetSegmenter

    torch.manual_seed(0)
    seg = UNetSegmenter(UNet25D(3, (4, 8), 2).eval(), batch_size=3)
    seg.train_spacing = 0.4
    hu = np.random.default_rng(0).integers(-1000, 1000, (7, 45, 37)).astype(np.int16)
    for spacing in ((1.5, 1.5, 1.5), (0.25, 0.2, 0.2), (0.5, 0.4, 0.4)):
        vol = canonical_volume(hu, spacing)
        prob = seg.probabilities(vol)
        assert prob.shape == hu.shape and np.isfinite(prob).all()
        assert np.array_equal(seg.segment(vol), (prob >= 0.5).astype(np.uint8))
    # z-resampling by an integer factor reproduces the frames that coincide with input frames
    vol = canonical_volume(hu, (1.5, 0.4, 0.4))
    seg_z = seg.probabilities(vol)
    m = (hu.shape[0] - 1) * 3 + 1
    pos = np.arange(m) / 3
    lo = np.minimum(np.floor(pos).astype(int), 6)
    w = (pos - lo)[:, None, None]
    fine = hu[lo] * (1 - w) + hu[np.minimum(lo + 1, 6)] * w
    direct = seg.probabilities(canonical_volume(np.rint(fine).astype(np.int16), (0.5, 0.4, 0.4)))
    assert np.abs(seg_z - direct[::3]).max() < 0.02


@needs_weights
def test_flip_averaging_is_mirror_symmetric_on_the_volumes_grid(phantom_slab):
    """Flip-averaged probabilities of a mirrored scan are the mirror image of the scan's. On a grid
    the model resamples (1.5 mm slices), this holds only if the mirrored pass keeps the voxel
    spacing: a bare array would skip the resampling the plain pass does (the first probe of the
    real CT made that mistake)."""
    import dataclasses

    from dmic_core.segmentation.flips import flip_averaged_probabilities

    seg = load_segmenter("builtin")
    volume, _ = phantom_slab
    thick = dataclasses.replace(volume, spacing=(1.5, *volume.spacing[1:]))
    assert seg.z_factor_for(thick) != 1.0  # the model does resample this grid
    plain = seg.probabilities(thick)
    assert np.array_equal(flip_averaged_probabilities(seg, thick, axes=()), plain)
    averaged = flip_averaged_probabilities(seg, thick)
    assert np.abs(averaged - plain).max() > 1e-3  # the mirrored pass ran and the model is not symmetric
    mirrored = thick.with_array(np.ascontiguousarray(thick.hu[:, :, ::-1]))
    assert np.allclose(flip_averaged_probabilities(seg, mirrored), averaged[:, :, ::-1], atol=1e-5)
    with pytest.raises(ValueError, match="in-plane"):
        flip_averaged_probabilities(seg, thick, axes=(0,))
