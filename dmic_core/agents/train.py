"""Pretraining on the source domain, and real-encode evaluation of agents.

Source domain (the stand-in for HRLVSC's natural-video pretraining): synthetic CCTA phantoms
(:func:`dmic_core.datasets.phantom.generate_phantom`, seeds 5000+, disjoint from the segmenter's
1000-3009) with a *different task*, large enhanced-structure segmentation by
:class:`~dmic_core.agents.source_task.LumenThresholdSegmenter`. Its masks (blood pool,
chambers, aorta: large smooth regions in over half of the CTUs) are what the agents see and
protect during pretraining; the target task (coronary lumen: thin vessels in ~10% of CTUs,
scored by a learned segmenter) is new to them.

Every source clip gets a surrogate :class:`~dmic_core.agents.env.ClipCache` built from real
encodes (cached on disk under ``work_dirs/cache/agents``), then :class:`~dmic_core.agents.a2c.A2CTrainer`
trains both agents (strategy ``full``) on the caches.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip
from dmic_core.agents.dmic import DMICAgents
from dmic_core.agents.env import ClipCache, RealEnv
from dmic_core.agents.source_task import LumenThresholdSegmenter
from dmic_core.agents.spaces import get_space
from dmic_core.datasets.seeds import seed_range
from dmic_core.evaluation import make_reference
from dmic_core.pipeline import TASK_CODING, CodingSetup
from dmic_core.segmentation.base import Segmenter
from dmic_core.volume import Volume

#: Phantom seeds of the source domain (pretraining) and of its held-out check.
SOURCE_SEEDS = tuple(seed_range("agents-source").seeds)
SOURCE_HELDOUT_SEEDS = tuple(seed_range("agents-source-check").seeds)
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / "work_dirs" / "cache" / "agents"


@dataclass
class PretrainConfig:
    """Source data, coding and A2C settings of a pretraining run."""

    seeds: Sequence[int] = SOURCE_SEEDS
    n_slices: int = 9
    size: int = 512
    crop: int | None = 256
    space: str = "paper"
    preset: str | None = "veryfast"
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    a2c: A2CConfig = field(default_factory=lambda: A2CConfig(
        iterations=3000, batch_clips=8, lr_frame=3e-4, lr_ctu=3e-4, entropy_coef_frame=0.03,
        ctu_grad_samples=256, strategy="full"))

    def setup(self) -> CodingSetup:
        if self.preset is None:
            return TASK_CODING
        return CodingSetup(codec=TASK_CODING.codec, preset=self.preset, bit_depth=TASK_CODING.bit_depth,
                           window=TASK_CODING.window)


def source_clip(seed: int, n_slices: int = 9, size: int = 512,
                crop: int | None = None) -> tuple[Volume, np.ndarray]:
    """A source-domain phantom clip and its coronary label (the label is *not* the source task).

    ``crop``: keep a ``crop`` x ``crop`` window (full resolution, CTU-aligned at a position drawn
    from the seed), so that each clip costs 4x fewer encoder cycles at 256 while CTUs keep their
    pixel scale; random positions mix heart (mostly foreground) and lung/wall/spine (background)
    CTUs. The frame agent sees 1/4 instead of 1/8 downsampled frames.
    """
    from dmic_core.datasets.phantom import generate_phantom

    vol, label = generate_phantom(int(seed), n_slices=n_slices, size=size)
    if crop is None or crop >= min(vol.shape[1:]):
        return vol, label
    if crop % 64:
        raise ValueError(f"crop must be a multiple of 64, got {crop}")
    rng = np.random.default_rng([int(seed), 7])
    y0 = int(rng.integers(0, (vol.shape[1] - crop) // 64 + 1)) * 64
    x0 = int(rng.integers(0, (vol.shape[2] - crop) // 64 + 1)) * 64
    hu = np.ascontiguousarray(vol.hu[:, y0:y0 + crop, x0:x0 + crop])
    cropped = Volume(hu, vol.spacing, vol.affine.copy(), hu.shape, vol.to_canonical.copy(), dict(vol.source),
                     {**vol.meta, "crop": {"y0": y0, "x0": x0, "size": crop}})
    return cropped, np.ascontiguousarray(label[:, y0:y0 + crop, x0:x0 + crop])


def _cache_path(cache_dir: Path, tag: str, seed: int, n_slices: int, size: int, space: str,
                setup: CodingSetup, segmenter: Segmenter) -> Path:
    key = json.dumps({"seed": seed, "n": n_slices, "size": size, "space": space, "setup": asdict(setup),
                      "seg": [segmenter.name, getattr(segmenter, "lo", None),
                              getattr(segmenter, "min_width_mm", None)], "v": 2}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir / f"{tag}-{seed}-{digest}.npz"


def build_clip(volume: Volume, segmenter: Segmenter, *, label: np.ndarray | None = None, space: str = "paper",
               setup: CodingSetup = TASK_CODING, cache_path: Path | None = None, name: str = "clip",
               progress: Callable[[int, int], None] | None = None) -> TrainClip:
    """A training clip: reference, surrogate cache (loaded from ``cache_path`` when present) and states."""
    reference = make_reference(segmenter, volume, label)
    if cache_path is not None and cache_path.is_file():
        cache = ClipCache.load(cache_path)
    else:
        cache = ClipCache.build(volume, segmenter, reference, space=space, setup=setup, progress=progress)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(cache_path.stem + ".tmp.npz")
            cache.save(tmp)
            tmp.replace(cache_path)
    return TrainClip.from_volume(volume.hu, reference.roi, cache, name)


def source_clips(cfg: PretrainConfig, log: Callable[[str], None] = print) -> list[TrainClip]:
    """Build (or load) the surrogate of every source clip."""
    seg = LumenThresholdSegmenter()
    setup = cfg.setup()
    clips = []
    for i, seed in enumerate(cfg.seeds):
        t0 = time.perf_counter()
        tag = "source" if cfg.crop is None else f"source{cfg.crop}"
        path = _cache_path(Path(cfg.cache_dir), tag, int(seed), cfg.n_slices, cfg.size, cfg.space, setup, seg)
        cached = path.is_file()
        vol, _ = source_clip(int(seed), cfg.n_slices, cfg.size, cfg.crop)
        clips.append(build_clip(vol, seg, space=cfg.space, setup=setup, cache_path=path,
                                name=f"phantom-{seed}"))
        log(f"[pretrain] source clip {i + 1}/{len(cfg.seeds)} seed {seed}: "
            f"{'loaded' if cached else 'built'} in {time.perf_counter() - t0:.1f} s")
    return clips


def pretrain(cfg: PretrainConfig, out: str | Path, *, resume: bool = True, log: Callable[[str], None] = print,
             should_stop: Callable[[], bool] | None = None, eval_every: int | None = 100) -> DMICAgents:
    """Pretrain both agents from scratch on the source domain; write ``out`` (float16 agents) and
    ``out.state`` (resumable training state)."""
    out = Path(out)
    clips = source_clips(cfg, log)
    import torch

    torch.manual_seed(cfg.a2c.seed)
    agents = DMICAgents(get_space(cfg.space))
    trainer = A2CTrainer(agents, clips, cfg.a2c, out)
    if resume and trainer.resume():
        log(f"[pretrain] resumed at iteration {trainer.iteration}")

    def progress(done: int, total: int, s: dict[str, float]) -> None:
        log(f"[pretrain] {done}/{total} reward {s['reward']:.3f} gain {s['gain']:+.3f} "
            f"rate {s['rate']:.3f} drop {s['drop']:.4f} QP_I {s['qp_i']:.1f} dQP {s['mean_offset']:.2f} "
            f"H {s['entropy_frame']:.2f}/{s['entropy_ctu']:.2f} "
            f"{s['seconds_per_iteration']:.2f} s/it ETA {s['eta_s'] / 60:.1f} min"
            + (f" | greedy reward {s['greedy_reward']:.3f} gain {s['greedy_gain']:+.3f} "
               f"QP_I {s['greedy_qp_i']:.1f}"
               if "greedy_gain" in s else ""))

    trainer.train(progress=progress, should_stop=should_stop, eval_every=eval_every)
    agents.meta.update({"domain": "source: phantom seeds with lumen-threshold task",
                        "seeds": [int(s) for s in cfg.seeds], "n_slices": cfg.n_slices,
                        "setup": asdict(cfg.setup())})
    trainer.save_checkpoint()
    return agents


def evaluate_real(agents: DMICAgents, volume: Volume, segmenter: Segmenter, lambdas: Sequence[float], *,
                  label: np.ndarray | None = None, setup: CodingSetup = TASK_CODING) -> list[dict[str, Any]]:
    """Real-encode outcomes of the agents' deterministic decisions at each lambda."""
    env = RealEnv(volume, segmenter, label, setup=setup, space=agents.space)
    rows = []
    for lam in lambdas:
        d = agents.decide(volume.hu, env.mask, float(lam))
        o = env.step(d.qp_i, d.offsets, float(lam))
        rows.append({**o.to_dict(), "mean_offset": float(d.offsets.mean()),
                     "decision_seconds": d.seconds["total"]})
    return rows


def two_level_real(volume: Volume, segmenter: Segmenter, lambdas: Sequence[float], *, space: str = "paper",
                   label: np.ndarray | None = None,
                   setup: CodingSetup = TASK_CODING) -> dict[float, dict[str, Any]]:
    """Best two-level decision per lambda, by real encodes: every QP_I with offset 0 on foreground
    and the smallest background offset; the oracle choice of QP_I for each lambda."""
    sp = get_space(space)
    env = RealEnv(volume, segmenter, label, setup=setup, space=sp)
    from dmic_core.maps import foreground_ctus

    fg = foreground_ctus(env.mask)
    off = np.where(fg, 0 if 0 in sp.fg_offsets else min(sp.fg_offsets), min(sp.bg_offsets)).astype(np.int32)
    outcomes = [env.step(q, off, 0.0) for q in sp.qp_i]
    best: dict[float, dict[str, Any]] = {}
    for lam in lambdas:
        scored = [(-(o.rate + lam * o.drop), o) for o in outcomes]
        r, o = max(scored, key=lambda t: t[0])
        best[float(lam)] = {**o.to_dict(), "lam": float(lam), "reward": float(r)}
    return best
