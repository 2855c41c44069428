"""Train the built-in 2.5-D U-Net on labelled CCTA volumes (synthetic phantoms or ImageCAS).

Data: generated phantoms (``dmic_core.datasets.phantom``) for a seed range, cached once as ``.npy``
files (memory-mapped while training), or every ``{id}.img.nii.gz`` / ``{id}.label.nii.gz`` pair
of an ImageCAS-layout folder.

Each step draws a batch of ``k x P x P`` patches: half centred near a vessel voxel, a quarter
on bright non-vessel tissue (chambers, aorta, bone: the hard negatives) and a quarter anywhere.
Augmentation: left-right and slice-order flips, in-plane zoom, HU gain/offset, Gaussian noise
and, on some patches, a mild blur. Blur and noise stay mild on purpose: the model should be
robust to the small losses of fine coding but still degrade, like a real model, when strong
compression smears the vessels away. Loss: BCE + soft Dice; Adam with cosine decay.

Everything random at step ``t`` comes from ``(seed, t)``, so a run resumed from a checkpoint
draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from dmic_core.segmentation._inference import available_cores
from dmic_core.segmentation.builtin import FORMAT, save_weights
from dmic_core.segmentation.config import DEFAULT_CACHE, TEST_SEEDS, TRAIN_SEEDS, VAL_SEEDS, TrainConfig
from dmic_core.segmentation.unet import HU_WINDOW, UNet25D, normalize_hu, slice_stack

@dataclass
class LabelledVolume:
    """One training/validation volume: HU ``(Z, Y, X)`` int16 and a 0/1 label, maybe memory-mapped."""

    name: str
    hu: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    vessel_idx: np.ndarray | None = None  # (n, 3) vessel voxel coordinates
    bright_idx: np.ndarray | None = None  # (n, 3) bright non-vessel voxel coordinates (subsampled)

    def index(self, rng: np.random.Generator, max_bright: int = 200_000) -> None:
        """Find vessel voxels and (a sample of) bright non-vessel voxels to centre patches on."""
        lab = np.asarray(self.label).reshape(-1)
        self.vessel_idx = np.stack(np.unravel_index(np.flatnonzero(lab), self.label.shape), 1).astype(np.int32)
        bright = np.flatnonzero((np.asarray(self.hu).reshape(-1) > 150) & (lab == 0))
        if len(bright) > max_bright:
            bright = np.sort(rng.choice(bright, max_bright, replace=False))
        self.bright_idx = np.stack(np.unravel_index(bright, self.label.shape), 1).astype(np.int32)


# --------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def _phantom_code_tag() -> str:
    """Short hash of the phantom generator's source (every module of its package), so a changed
    generator misses the cache."""
    from dmic_core.datasets import phantom

    digest = hashlib.sha256()
    for path in sorted(Path(phantom.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def phantom_volume(seed: int, cache_dir: str | Path | None = DEFAULT_CACHE, size: int = 512,
                   n_slices: int | None = None) -> LabelledVolume:
    """The phantom for ``seed`` (generated once, then read memory-mapped from the cache)."""
    from dmic_core.datasets.phantom import generate_phantom

    if cache_dir is None:
        vol, label = generate_phantom(seed, n_slices=n_slices, size=size)
        return LabelledVolume(f"phantom-{seed}", vol.hu, (label > 0).astype(np.uint8), vol.spacing)
    folder = Path(cache_dir) / f"{_phantom_code_tag()}-s{size}-n{n_slices or 'def'}"
    stem = folder / f"seed{seed}"
    meta_path = stem.with_suffix(".json")
    if not meta_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        vol, label = generate_phantom(seed, n_slices=n_slices, size=size)
        np.save(f"{stem}.hu.npy", np.ascontiguousarray(vol.hu, dtype=np.int16))
        np.save(f"{stem}.label.npy", (np.asarray(label) > 0).astype(np.uint8))
        meta_path.write_text(json.dumps({"seed": seed, "spacing": list(vol.spacing)}))
    meta = json.loads(meta_path.read_text())
    return LabelledVolume(f"phantom-{seed}", np.load(f"{stem}.hu.npy", mmap_mode="r"),
                          np.load(f"{stem}.label.npy", mmap_mode="r"), tuple(meta["spacing"]))


def imagecas_volumes(folder: str | Path) -> list[LabelledVolume]:
    """Every image/label pair of an ImageCAS-layout folder, loaded on the canonical grid."""
    from dmic_core.io import find_imagecas_pairs, load_label, load_volume

    out = []
    for case_id, img_path, lab_path in find_imagecas_pairs(folder):
        if lab_path is None:
            continue  # an unlabelled case cannot train or validate
        vol = load_volume(img_path)
        lab = load_label(lab_path, vol)
        out.append(LabelledVolume(str(case_id), vol.hu, (np.asarray(lab) > 0).astype(np.uint8), vol.spacing))
    return out


def parse_seed_range(text: str) -> range:
    """``"1000:1030"`` -> ``range(1000, 1030)``; ``"7"`` -> ``range(7, 8)``."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            r = range(int(a), int(b))
        else:
            r = range(int(text), int(text) + 1)
    except ValueError as exc:
        raise ValueError(f"seed range must look like A:B, got {text!r}") from exc
    if len(r) == 0:
        raise ValueError(f"seed range {text!r} is empty")
    return r


# ------------------------------------------------------------------------------------ sampling
def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur2d(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` in-plane."""
    k = _gaussian_kernel(sigma)
    c = x.shape[1]
    r = len(k) // 2
    x = nn.functional.conv2d(nn.functional.pad(x, (r, r, 0, 0), mode="replicate"),
                             k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return nn.functional.conv2d(nn.functional.pad(x, (0, 0, r, r), mode="replicate"),
                                k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def sample_batch(volumes: Sequence[LabelledVolume], cfg: TrainConfig, step: int,
                 real: Any | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``(B, k, P, P)`` (normalised), targets and loss weights ``(B, 1, P, P)`` for step ``step``.

    With a :class:`~dmic_core.segmentation.composite.RealTextureSampler` ``real`` and
    ``cfg.real_fraction > 0``, that share of the patches comes from real CT texture.
    """
    rng = np.random.default_rng([cfg.seed, step])
    k, p, half = cfg.in_slices, cfg.patch, cfg.in_slices // 2
    xs, ys, ws = [], [], []
    for _ in range(cfg.batch_size):
        if real is not None and cfg.real_fraction > 0 and rng.random() < cfg.real_fraction:
            zoom = float(np.exp(rng.uniform(*np.log(cfg.zoom_range))))
            img, lab, wgt = real.sample(rng, k, p, zoom, vessel=bool(rng.random() < cfg.real_vessel_fraction))
            if rng.random() < 0.5:
                img, lab, wgt = img[:, :, ::-1], lab[:, ::-1], wgt[:, ::-1]
            if rng.random() < 0.5:
                img = img[::-1]
            gain, offset = rng.uniform(0.92, 1.08), rng.uniform(-30, 30)
            img = (img - 40.0) * gain + 40.0 + offset
            xs.append(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)))
            ys.append(torch.from_numpy(np.ascontiguousarray(lab, dtype=np.float32)))
            ws.append(torch.from_numpy(np.ascontiguousarray(wgt, dtype=np.float32)))
            continue
        vol = volumes[int(rng.integers(len(volumes)))]
        z_n, h, w = vol.hu.shape
        zoom = float(np.exp(rng.uniform(*np.log(cfg.zoom_range))))
        src = min(max(8, int(round(p * zoom))), h, w)
        u = rng.random()
        if u < cfg.vessel_fraction and len(vol.vessel_idx):
            c = vol.vessel_idx[int(rng.integers(len(vol.vessel_idx)))] + np.r_[0, rng.integers(-src // 3, src // 3 + 1, 2)]
        elif u < cfg.vessel_fraction + cfg.hard_negative_fraction and len(vol.bright_idx):
            c = vol.bright_idx[int(rng.integers(len(vol.bright_idx)))]
        else:
            c = np.array([rng.integers(z_n), rng.integers(h), rng.integers(w)])
        zc = int(np.clip(c[0], 0, z_n - 1))
        y0 = int(np.clip(c[1] - src // 2, 0, h - src))
        x0 = int(np.clip(c[2] - src // 2, 0, w - src))
        zi = np.clip(np.arange(zc - half, zc + half + 1), 0, z_n - 1)
        img = np.asarray(vol.hu[zi[0]:zi[-1] + 1, y0:y0 + src, x0:x0 + src], dtype=np.float32)
        img = img[np.clip(zi - zi[0], 0, len(img) - 1)]
        lab = np.asarray(vol.label[zc, y0:y0 + src, x0:x0 + src], dtype=np.float32)
        if rng.random() < 0.5:  # patient left-right
            img, lab = img[:, :, ::-1], lab[:, ::-1]
        if rng.random() < 0.5:  # slice order
            img = img[::-1]
        # intensity: gain/offset around soft tissue, then noise (HU units)
        gain, offset = rng.uniform(0.92, 1.08), rng.uniform(-30, 30)
        img = (img - 40.0) * gain + 40.0 + offset
        xs.append(torch.from_numpy(np.ascontiguousarray(img)))
        ys.append(torch.from_numpy(np.ascontiguousarray(lab)))
        ws.append(torch.ones(lab.shape, dtype=torch.float32))
    out_x, out_y, out_w = [], [], []
    for i, (img, lab, wgt) in enumerate(zip(xs, ys, ws)):
        img, lab, wgt = img[None], lab[None, None], wgt[None, None]
        if img.shape[-1] != p or img.shape[-2] != p:
            img = nn.functional.interpolate(img, size=(p, p), mode="bilinear", align_corners=False)
            lab = nn.functional.interpolate(lab, size=(p, p), mode="bilinear", align_corners=False)
            wgt = nn.functional.interpolate(wgt, size=(p, p), mode="nearest")
        if rng.random() < cfg.blur_prob:
            img = blur2d(img, float(rng.uniform(*cfg.blur_sigma)))
        sigma = float(rng.uniform(0.0, cfg.noise_hu))
        if sigma > 0:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            img = img + sigma * torch.randn(img.shape, generator=g)
        out_x.append(normalize_hu(img))
        out_y.append((lab >= 0.5).float())
        out_w.append(wgt)
    return torch.cat(out_x), torch.cat(out_y), torch.cat(out_w)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE + (1 - soft Dice over the batch's vessel voxels); voxels of ``weight`` 0 do not count."""
    if weight is None:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits)
    else:
        bce = (nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() \
            / weight.sum().clamp_min(1.0)
        prob = torch.sigmoid(logits) * weight
    inter = (prob * target).sum()
    dice = (2 * inter + eps) / (prob.sum() + target.sum() + eps)
    return bce + (1.0 - dice)


# ---------------------------------------------------------------------------------- evaluation
def vessel_slices(label: np.ndarray, margin: int = 4) -> tuple[int, int]:
    """The z-range holding vessels, widened by ``margin`` (whole volume when no vessel)."""
    zs = np.flatnonzero(np.asarray(label).reshape(label.shape[0], -1).any(axis=1))
    if len(zs) == 0:
        return 0, label.shape[0]
    return max(0, int(zs[0]) - margin), min(label.shape[0], int(zs[-1]) + 1 + margin)


@torch.inference_mode()
def evaluate(net: UNet25D, volumes: Sequence[LabelledVolume], batch_size: int = 8,
             max_slices: int | None = 48) -> dict[str, float]:
    """Global vessel Dice/IoU over the vessel-bearing slices of ``volumes`` (full frames)."""
    net.eval()
    tp = fp = fn = tn = 0
    for vol in volumes:
        z0, z1 = vessel_slices(vol.label)
        if max_slices and z1 - z0 > max_slices:
            mid = (z0 + z1) // 2
            z0, z1 = mid - max_slices // 2, mid - max_slices // 2 + max_slices
        half = net.in_slices // 2
        lo, hi = max(0, z0 - half), min(vol.hu.shape[0], z1 + half)
        frames = normalize_hu(np.asarray(vol.hu[lo:hi]))
        for s in range(z0, z1, batch_size):
            e = min(z1, s + batch_size)
            x = slice_stack(frames, torch.arange(s, e) - lo, net.in_slices)
            from dmic_core.segmentation.unet import pad_to_multiple

            x, (h, w) = pad_to_multiple(x, net.size_multiple)
            pred = (net(x)[:, 0, :h, :w] >= 0).numpy()
            ref = np.asarray(vol.label[s:e]) > 0
            tp += int((pred & ref).sum())
            fp += int((pred & ~ref).sum())
            fn += int((~pred & ref).sum())
            tn += int((~pred & ~ref).sum())
    from dmic_core.metrics.task import scores_from_counts

    return scores_from_counts(tp, tp + fp, tp + fn, tp + fp + fn + tn)


def real_false_ml(net: UNet25D, crop: Any, spacing: float, slice_mm: float) -> float:
    """False-vessel ml (any category) of ``net`` on the real crop's *training* frames, segmented
    at the training geometry (model selection; the evaluation frames are never looked at)."""
    from dmic_core.segmentation.builtin import UNetSegmenter
    from dmic_core.segmentation.plausibility import false_vessel_report
    from dmic_core.segmentation.realdata import TRAIN_FRAMES

    was_training = net.training
    seg = UNetSegmenter(net.eval(), threads=torch.get_num_threads())
    seg.train_spacing, seg.train_slice_mm = spacing, slice_mm
    (a, b), = TRAIN_FRAMES
    mask = seg.segment(crop.volume.slab(a, b))
    report = false_vessel_report(mask, crop.spacing, crop.regions(), origin_mm=(a * crop.spacing[0], 0.0, 0.0))
    net.train(was_training)
    return float(report["false_any_ml"])


# ------------------------------------------------------------------------------------ training
def _load_data(cfg: TrainConfig, log: Callable[[str], None]) -> tuple[list[LabelledVolume], list[LabelledVolume]]:
    if cfg.data_dir:
        vols = imagecas_volumes(cfg.data_dir)
        if len(vols) < 2:
            from dmic_core.errors import DmicInputError

            raise DmicInputError(f"need at least two image/label pairs, found {len(vols)}", cfg.data_dir)
        n_val = max(1, int(round(cfg.val_fraction * len(vols))))
        return vols[n_val:], vols[:n_val]
    t0 = time.perf_counter()
    train, val = [], []
    for seeds, out in ((cfg.train_seeds, train), (cfg.val_seeds, val)):
        for s in seeds:
            out.append(phantom_volume(int(s), cfg.cache_dir, cfg.size, cfg.n_slices))
    log(f"data: {len(train)} training and {len(val)} validation phantoms ready in "
        f"{time.perf_counter() - t0:.0f} s")
    return train, val


def default_checkpoint(out: str | Path) -> Path:
    """Where training checkpoints of ``out`` go unless told: git-ignored ``work_dirs/checkpoints/``."""
    return DEFAULT_CACHE.parents[1] / "checkpoints" / f"{Path(out).stem}.ckpt"


def _portable(cfg: TrainConfig) -> dict[str, Any]:
    """The config as stored in shipped weights: no machine-specific paths or thread counts."""
    d = asdict(cfg)
    d.pop("cache_dir", None)
    d.pop("threads", None)
    return d


def train(cfg: TrainConfig, out: str | Path, *, checkpoint: str | Path | None = None, resume: bool = False,
          progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, writing the best-validation weights to ``out`` and a resumable checkpoint.

    Args:
        cfg: the run's settings.
        out: weights file (``save_weights`` format) holding the best validation Dice so far.
        checkpoint: checkpoint path (default :func:`default_checkpoint`), written every
            ``cfg.checkpoint_every`` steps and at the end.
        resume: continue from ``checkpoint`` (its config wins over ``cfg`` except ``steps``).

    Returns:
        A summary: best validation scores, steps, seconds.
    """
    out = Path(out)
    ckpt_path = Path(checkpoint) if checkpoint else default_checkpoint(out)
    torch.manual_seed(cfg.seed)
    state: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        steps = cfg.steps
        cfg = TrainConfig(**state["config"])
        cfg.steps = max(steps, cfg.steps) if steps else cfg.steps
        log(f"resuming from {ckpt_path} at step {state['step']}")
    torch.set_num_threads(int(cfg.threads or available_cores()))
    net = cfg.net()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, best, history, seconds = 0, {"dice": -1.0}, [], 0.0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best, history, seconds = state["step"], state["best"], state["history"], state["seconds"]
    elif cfg.init_weights:
        from dmic_core.segmentation.builtin import load_weights

        init, _meta = load_weights(cfg.init_weights)
        if init.config() != net.config():
            raise ValueError(f"--init weights are a {init.config()} network, this run builds {net.config()}")
        net.load_state_dict(init.state_dict())
        log(f"initialised from {cfg.init_weights}")
    real = crop = None
    if cfg.real_fraction > 0:
        from dmic_core.segmentation.composite import RealTextureSampler
        from dmic_core.segmentation.realdata import load_crop

        t0 = time.perf_counter()
        crop = load_crop(cfg.real_crop)
        real = RealTextureSampler(crop, seed=cfg.seed, n_patients=cfg.real_patients)
        log(f"real texture: {len(real.patients)} virtual patients on the crop's training frames "
            f"({time.perf_counter() - t0:.0f} s)")

    train_vols, val_vols = _load_data(cfg, log)
    rng = np.random.default_rng(cfg.seed)
    for v in train_vols:
        v.index(rng)
    spacing = float(np.median([math.sqrt(v.spacing[1] * v.spacing[2]) for v in train_vols]))
    slice_mm = float(np.median([v.spacing[0] for v in train_vols]))

    def lr_at(step: int) -> float:
        warm = 100
        if step < warm:
            return cfg.lr * (step + 1) / warm
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, cfg.steps - warm))))

    def save_checkpoint(step: int) -> None:
        payload = {"format": FORMAT + "-ckpt", "config": asdict(cfg), "model": net.state_dict(),
                   "optimizer": opt.state_dict(), "step": step, "best": best, "history": history,
                   "seconds": seconds}
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(ckpt_path)

    def validate(step: int) -> None:
        nonlocal best
        scores = evaluate(net, val_vols)
        scores["score"] = scores["dice"]
        if crop is not None:
            scores["real_train_false_ml"] = real_false_ml(net, crop, spacing, slice_mm)
            scores["score"] = scores["dice"] - cfg.select_false_ml_weight * scores["real_train_false_ml"]
        history.append({"step": step, **scores})
        improved = scores["score"] > best.get("score", best.get("dice", -1.0))
        extra = f" real false {scores['real_train_false_ml']:.2f} ml" if crop is not None else ""
        log(f"step {step}: val dice {scores['dice']:.4f} vessel IoU {scores['vessel_iou']:.4f} "
            f"mIoU {scores['miou']:.4f}{extra}{'  (best)' if improved else ''}")
        if improved:
            best = {"step": step, **scores}
            save_weights(net, out, {"spacing_mm": spacing, "slice_mm": slice_mm, "threshold": 0.5, "train": _portable(cfg),
                                    "val": best, "trained_steps": step})
        net.train()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc="segment-train", unit="step", mininterval=5)
    net.train()
    running = None
    t_last = time.perf_counter()
    for step in range(start, cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y, w = sample_batch(train_vols, cfg, step, real)
        loss = dice_bce_loss(net(x), y, weight=None if real is None else w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        done = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        if done % cfg.val_every == 0 or done == cfg.steps:
            validate(done)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(done)
    if bar is not None:
        bar.close()
    if start >= cfg.steps and not out.is_file():
        validate(start)
    return {"best": best, "steps": cfg.steps, "train_seconds": round(seconds, 1), "weights": str(out),
            "checkpoint": str(ckpt_path), "hu_window": list(HU_WINDOW), "config": asdict(cfg)}


__all__ = ["TrainConfig", "train", "evaluate", "phantom_volume", "imagecas_volumes", "parse_seed_range",
           "sample_batch", "dice_bce_loss", "TRAIN_SEEDS", "VAL_SEEDS", "TEST_SEEDS"]
