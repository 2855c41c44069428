"""Training clips and their surrogate caches.

Each of the K training volumes gives ``clips_per_volume`` clips of ``clip_frames`` frames spread
over its heart slab (:func:`clip_specs`); each clip's surrogate
(:class:`~dmic_core.agents.env.ClipCache`) is built from real encodes in spawned worker processes
(:func:`build_caches`) and kept on disk under a key of everything it depends on (images, frames,
action space, coding setup, segmenter), so runs and experiments share them.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmic_core.errors import DmicInputError
from dmic_core.finetune.config import FinetuneConfig
from dmic_core.finetune.data import Split, clip_windows, file_fingerprint, heart_slab, segmenter_fingerprint

CACHE_VERSION = 1

Progress = Callable[[dict[str, Any]], None]


def _spawn():
    """Worker processes are spawned: forking a parent whose torch thread pool is running can hang."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


@dataclass
class ClipSpec:
    """One training clip: frames ``[start, stop)`` of a case, and where its surrogate lives."""

    case_id: str
    image: str
    label: str | None
    start: int
    stop: int
    cache_path: str

    @property
    def name(self) -> str:
        return f"{self.case_id}[{self.start}:{self.stop}]"


def _load_case(image: str, label: str | None):
    from dmic_core.io import load_label, load_volume

    volume = load_volume(image)
    lab = None if label is None else (load_label(label, like=volume) > 0).astype(np.uint8)
    return volume, lab


def clip_specs(cfg: FinetuneConfig, split: Split, cases: dict[str, tuple[str, str | None]],
               case_ids: list[str] | None = None) -> list[ClipSpec]:
    """The clips of the split's K training volumes (or of ``case_ids``) and their cache paths."""
    seg_id = segmenter_fingerprint(cfg.segmenter)
    specs = []
    for cid in (split.train if case_ids is None else case_ids):
        image, label = cases[cid]
        volume, lab = _load_case(image, label)
        mask = lab if lab is not None else np.ones(volume.shape, np.uint8)
        slab = heart_slab(mask, cfg.slab)
        for a, b in clip_windows(slab, cfg.clip_frames, cfg.clips_per_volume):
            key = json.dumps({"img": file_fingerprint(image), "lab": None if label is None else file_fingerprint(label),
                              "a": a, "b": b, "space": cfg.space, "setup": asdict(cfg.coding_setup()),
                              "seg": seg_id, "v": CACHE_VERSION}, sort_keys=True)
            digest = hashlib.sha1(key.encode()).hexdigest()[:12]
            path = Path(cfg.cache_dir) / f"{cid}-{a}-{b}-{digest}.npz"
            specs.append(ClipSpec(cid, image, label, a, b, str(path)))
    return specs


_WORKER_SEG: Any = None


def _init_cache_worker(segmenter: str, threads: int) -> None:
    global _WORKER_SEG
    import torch

    torch.set_num_threads(max(1, threads))
    from dmic_core.runtime import configure_allocator
    from dmic_core.segmentation import load_segmenter

    configure_allocator()

    _WORKER_SEG = load_segmenter(segmenter)


def _build_cache(spec: ClipSpec, space: str, setup_dict: dict[str, Any]) -> tuple[str, float]:
    """Worker: build one clip's surrogate and write it to ``spec.cache_path``."""
    from dmic_core.agents.train import build_clip
    from dmic_core.pipeline import CodingSetup

    t0 = time.perf_counter()
    setup_dict = dict(setup_dict)
    if setup_dict.get("window") is not None:
        setup_dict["window"] = tuple(setup_dict["window"])
    volume, lab = _load_case(spec.image, spec.label)
    clip = volume.slab(spec.start, spec.stop)
    lab = None if lab is None else lab[spec.start:spec.stop]
    build_clip(clip, _WORKER_SEG, label=lab, space=space, setup=CodingSetup(**setup_dict),
               cache_path=Path(spec.cache_path), name=spec.name)
    return spec.cache_path, time.perf_counter() - t0


def build_caches(specs: list[ClipSpec], cfg: FinetuneConfig, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print) -> float:
    """Build the missing surrogate caches in ``cfg.workers`` processes; returns seconds spent."""
    missing = [s for s in specs if not Path(s.cache_path).is_file()]
    t0 = time.perf_counter()
    if not missing:
        return 0.0
    workers = max(1, min(cfg.workers, len(missing)))
    log(f"[finetune] building {len(missing)} surrogate cache(s) from real encodes ({workers} worker(s)); "
        f"{len(specs) - len(missing)} already on disk")
    done = 0
    setup = asdict(cfg.coding_setup())
    with ProcessPoolExecutor(mp_context=_spawn(), max_workers=workers, initializer=_init_cache_worker,
                             initargs=(cfg.segmenter, 1)) as pool:
        futures = [pool.submit(_build_cache, s, cfg.space, setup) for s in missing]
        try:
            for fut in as_completed(futures):
                path, secs = fut.result()
                done += 1
                elapsed = time.perf_counter() - t0
                eta = elapsed / done * (len(missing) - done)
                log(f"[finetune] cache {done}/{len(missing)} {Path(path).name} in {secs:.0f} s, ETA {eta / 60:.1f} min")
                if progress is not None:
                    progress({"phase": "cache", "done": done, "total": len(missing), "eta_s": eta})
                if should_stop is not None and should_stop():
                    for f in futures:
                        f.cancel()
                    break
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
            raise
    return time.perf_counter() - t0


def load_clips(specs: list[ClipSpec], cfg: FinetuneConfig):
    """:class:`~dmic_core.agents.a2c.TrainClip` of every spec (caches must exist)."""
    from dmic_core.agents.train import build_clip
    from dmic_core.segmentation import load_segmenter

    seg = load_segmenter(cfg.segmenter)
    clips = []
    loaded: dict[str, Any] = {}
    for s in specs:
        if s.case_id not in loaded:
            loaded = {s.case_id: _load_case(s.image, s.label)}
        volume, lab = loaded[s.case_id]
        clips.append(build_clip(volume.slab(s.start, s.stop), seg, label=None if lab is None else lab[s.start:s.stop],
                                space=cfg.space, setup=cfg.coding_setup(), cache_path=Path(s.cache_path),
                                name=s.name))
        clips[-1].cache.edge_rate = (cfg.rate_edge_bits, cfg.rate_edge_halving)
        clips[-1].cache.rate_qp_cap = cfg.rate_qp_cap
    shapes = {c.frame_planes.shape for c in clips}
    if len(shapes) > 1:
        raise DmicInputError(f"training clips differ in shape {sorted(shapes)}: use volumes of one in-plane size")
    return clips
