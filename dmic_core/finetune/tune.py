"""Few-shot tuning of the pretrained agents on a labelled target dataset (paper II-B, III-A).

:func:`finetune` = split the dataset K:10:10 (:func:`~dmic_core.finetune.data.split_cases`),
cut training clips from the K training volumes' heart slabs, build (or load) each clip's
surrogate :class:`~dmic_core.agents.env.ClipCache` from real encodes (cached on disk under
``work_dirs/cache/finetune``, built in parallel worker processes), then run
:class:`~dmic_core.agents.a2c.A2CTrainer` under one of the paper's eight strategies with batch size K,
learning rates 1e-3 (frame agent) / 1e-4 (CTU agent), 1000 iterations by default.

Outputs next to ``out`` (``X.pt``): the float16 agents ``X.pt`` (meta: strategy, K, split seed and
case ids, trainable parameters, pretrained checkpoint, clips, timings), ``X.pt.state`` (optimiser,
RNG, full-precision weights: resumable), ``X.log.jsonl`` (training history: reward, losses,
entropies, every 10 iterations), ``X.status.json`` (phase, progress, ETA, state; what the app
polls). Touching ``X.cancel`` (or ``should_stop()`` returning True, or Ctrl-C) stops the run at
the next iteration with a checkpoint; ``resume=True`` continues from ``X.pt.state``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmic_core.agents.strategies import DEFAULT_STRATEGY, STRATEGY_NAMES
from dmic_core.errors import DmicInputError
from dmic_core.finetune.data import (SLAB_FRAMES, Split, clip_windows, file_fingerprint, heart_slab,
                                     segmenter_fingerprint, split_cases)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = ROOT / "work_dirs" / "cache" / "finetune"
CACHE_VERSION = 1

def _spawn():
    """Worker processes are spawned: forking a parent whose torch thread pool is running can hang."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


Progress = Callable[[dict[str, Any]], None]


@dataclass
class FinetuneConfig:
    """Everything that defines a few-shot tuning run (stored in the checkpoint's meta).

    Attributes:
        data: ImageCAS-layout folder (``{id}.img.nii.gz`` + ``{id}.label.nii.gz``) or dataset CSV.
        shots: K, the number of labelled training volumes (paper: 1, 3, 5); also the batch size.
        strategy: one of the paper's eight (see :mod:`dmic_core.agents.strategies`).
        iterations: A2C updates (paper: 1000).
        pretrained: agents to start from (default: ``assets/agents_pretrained.pt``).
        split_seed: seed of the K:10:10 split; ``seed``: seed of the A2C run (sampling, init).
        clip_frames / clips_per_volume / slab: each training volume gives ``clips_per_volume``
            clips of ``clip_frames`` frames spread over its ``slab``-slice heart slab.
        preset: x265 preset of the surrogate's encodes (evaluation always uses the task coding).
        segmenter: the target task's model (default: the built-in coronary U-Net).
        val_volumes: 0 keeps the last iteration (the paper's protocol). N > 0 also cuts clips from
            the first N validation volumes (surrogates built like the training ones), scores the
            greedy agents there every 100 iterations and writes the best-scoring iteration as the
            output (``X.pt``; the last one stays in ``X.last.pt``): model selection on validation
            data, never on test data.
    """

    data: str
    shots: int = 1
    strategy: str = DEFAULT_STRATEGY
    iterations: int = 1000
    pretrained: str | None = None
    split_seed: int = 0
    seed: int = 0
    lr_frame: float = 1e-3
    lr_ctu: float = 1e-4
    entropy_frame: float = 0.01
    entropy_ctu: float = 0.01
    ctu_grad_samples: int = 256
    clip_frames: int = 9
    clips_per_volume: int = 2
    slab: int = SLAB_FRAMES
    preset: str | None = "veryfast"
    space: str = "paper"
    segmenter: str = "builtin"
    workers: int = 2
    threads: int | None = None
    n_val: int = 10
    n_test: int = 10
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    checkpoint_every: int = 100
    val_volumes: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGY_NAMES:
            raise DmicInputError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGY_NAMES)}")
        if self.shots < 1:
            raise DmicInputError(f"--shots must be at least 1, got {self.shots}")
        if self.iterations < 0:
            raise DmicInputError(f"--iterations must be >= 0, got {self.iterations}")
        if self.clip_frames < 1 or self.clips_per_volume < 1:
            raise DmicInputError("clip_frames and clips_per_volume must be at least 1")
        if not 0 <= self.val_volumes <= self.n_val:
            raise DmicInputError(f"--val-volumes must be between 0 and {self.n_val}, got {self.val_volumes}")

    def coding_setup(self):
        from dmic_core.pipeline import TASK_CODING, CodingSetup

        if self.preset is None:
            return TASK_CODING
        return CodingSetup(codec=TASK_CODING.codec, preset=self.preset, bit_depth=TASK_CODING.bit_depth,
                           window=TASK_CODING.window)


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


@dataclass
class FinetuneResult:
    checkpoint: str
    status: str                      # "done" or "cancelled"
    iteration: int
    iterations: int
    split: dict[str, Any]
    trainable_parameters: int
    trainable_by_agent: dict[str, int]
    total_parameters: int
    seconds: dict[str, float] = field(default_factory=dict)
    history_tail: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- paths ------------------------------------------------------------------------------------

def default_pretrained() -> Path:
    """The shipped pretrained agents tuning starts from (a :class:`DmicInputError` naming them when missing)."""
    from dmic_core.agents.inference import pretrained_agents_path

    return pretrained_agents_path()


def run_paths(out: str | Path) -> dict[str, Path]:
    """Files of a run whose checkpoint is ``out``."""
    out = Path(out)
    return {"checkpoint": out, "state": out.with_suffix(out.suffix + ".state"),
            "log": out.with_suffix(".log.jsonl"), "status": out.with_suffix(".status.json"),
            "cancel": out.with_suffix(".cancel"), "stdout": out.with_suffix(".stdout.log")}


def read_status(out: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(run_paths(out)["status"].read_text())
    except (OSError, ValueError):
        return None


def read_history(out: str | Path) -> list[dict[str, Any]]:
    """Rows of the training log (``X.log.jsonl``): reward, losses, entropies, ETA ..."""
    path = run_paths(out)["log"]
    rows = []
    try:
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line being written
    except OSError:
        pass
    return rows


def request_cancel(out: str | Path) -> None:
    """Ask a running tuning (in any process) to stop at its next iteration with a checkpoint."""
    path = run_paths(out)["cancel"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()))


def _write_status(out: Path, payload: dict[str, Any]) -> None:
    path = run_paths(out)["status"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, default=float))
    tmp.replace(path)


# --- dataset and clips ---------------------------------------------------------------------------

def discover_cases(data: str | Path) -> dict[str, tuple[str, str | None]]:
    """``case_id -> (image, label)`` of an ImageCAS-layout folder or dataset CSV."""
    from dmic_core.datasets.discovery import discover

    return {e.case_id: (e.image, e.label) for e in discover(data)}


def make_split(cfg: FinetuneConfig) -> tuple[Split, dict[str, tuple[str, str | None]]]:
    cases = discover_cases(cfg.data)
    labelled = {k: v for k, v in cases.items() if v[1] is not None}
    if len(labelled) < cfg.shots:
        raise DmicInputError(f"{cfg.shots}-shot tuning needs {cfg.shots} labelled volumes; "
                             f"{cfg.data} has {len(labelled)}")
    return split_cases(sorted(labelled), cfg.shots, cfg.split_seed, cfg.n_val, cfg.n_test), labelled


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
    from dmic_core.segmentation import load_segmenter

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
    shapes = {c.frame_planes.shape for c in clips}
    if len(shapes) > 1:
        raise DmicInputError(f"training clips differ in shape {sorted(shapes)}: use volumes of one in-plane size")
    return clips


# --- the run ------------------------------------------------------------------------------------

def finetune(cfg: FinetuneConfig, out: str | Path, *, resume: bool = False, progress: Progress | None = None,
             should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] = print,
             eval_every: int | None = 100) -> FinetuneResult:
    """Tune the pretrained agents on ``cfg.shots`` labelled volumes of ``cfg.data``; write ``out``.

    ``progress(event)`` gets ``{"phase": "cache" | "train" | "done", "done", "total", "eta_s",
    "stats"}``; ``should_stop()`` (or the file ``X.cancel``) stops with a checkpoint. Re-running
    with ``resume=True`` continues from the last checkpoint; without it an old run at ``out`` is
    replaced.
    """
    import torch

    from dmic_core.agents.a2c import A2CConfig, A2CTrainer
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.policies import count_parameters

    out = Path(out)
    paths = run_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        for key in ("state", "log"):
            paths[key].unlink(missing_ok=True)
    t_start = time.perf_counter()
    status: dict[str, Any] = {"state": "running", "phase": "setup", "pid": os.getpid(), "started": time.time(),
                              "config": asdict(cfg), "out": str(out)}

    def stop() -> bool:
        return paths["cancel"].exists() or (should_stop is not None and should_stop())

    def emit(event: dict[str, Any]) -> None:
        status.update({k: v for k, v in event.items() if k != "stats"}, updated=time.time())
        if "stats" in event:
            status["last"] = event["stats"]
        _write_status(out, status)
        if progress is not None:
            progress(event)

    try:
        emit({"phase": "setup", "done": 0, "total": 1})
        split, cases = make_split(cfg)
        pretrained = Path(cfg.pretrained) if cfg.pretrained else default_pretrained()
        agents = DMICAgents.load(pretrained)
        if agents.space.name != cfg.space:
            cfg.space = agents.space.name
        specs = clip_specs(cfg, split, cases)
        val_ids = list(split.val[:cfg.val_volumes])
        val_specs = clip_specs(cfg, split, cases, val_ids) if val_ids else []
        log(f"[finetune] {cfg.strategy}, {cfg.shots}-shot: train {list(split.train)} | "
            f"val {len(split.val)} | test {len(split.test)} (split seed {split.seed}); {len(specs)} clip(s)"
            + (f"; selection on {len(val_specs)} validation clip(s) of {val_ids}" if val_specs else ""))
        t_cache = build_caches(specs + val_specs, cfg, emit, stop, log)
        if stop():
            raise _Cancelled()
        clips = load_clips(specs, cfg)
        val_clips = load_clips(val_specs, cfg) if val_specs else []
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        a2c_cfg = A2CConfig(iterations=cfg.iterations, batch_clips=cfg.shots, lr_frame=cfg.lr_frame,
                            lr_ctu=cfg.lr_ctu, entropy_coef_frame=cfg.entropy_frame,
                            entropy_coef_ctu=cfg.entropy_ctu, ctu_grad_samples=cfg.ctu_grad_samples,
                            strategy=cfg.strategy, seed=cfg.seed, checkpoint_every=cfg.checkpoint_every,
                            threads=cfg.threads)
        pre_meta = dict(agents.meta)
        trainer = A2CTrainer(agents, clips, a2c_cfg, out, val_clips=val_clips)
        resumed = resume and trainer.resume()
        if resumed:
            log(f"[finetune] resumed at iteration {trainer.iteration}/{cfg.iterations}")
        trainable = {"frame": count_parameters(agents.frame)["trainable"],
                     "ctu": count_parameters(agents.ctu)["trainable"]}
        total = count_parameters(agents.frame)["total"] + count_parameters(agents.ctu)["total"]
        agents.meta = {
            "kind": "finetuned", "strategy": cfg.strategy, "shots": cfg.shots,
            "split": split.to_dict(), "split_seed": split.seed, "train_cases": list(split.train),
            "trainable_parameters": int(sum(trainable.values())), "trainable_by_agent": trainable,
            "total_parameters": int(total), "finetune": asdict(cfg),
            "pretrained_checkpoint": str(pretrained), "pretrained_sha256": file_fingerprint(pretrained, full=True),
            "pretrained_meta": {k: v for k, v in pre_meta.items() if k in ("domain", "seeds", "n_slices", "setup",
                                                                          "strategy", "iteration")},
            "clips": [{"case": s.case_id, "frames": [s.start, s.stop]} for s in specs],
            "val_clips": [{"case": s.case_id, "frames": [s.start, s.stop]} for s in val_specs],
            "target": f"task: {cfg.segmenter} segmenter; reference: labels of the training volumes",
            "segmenter": segmenter_fingerprint(cfg.segmenter),
        }
        t_train0 = time.perf_counter()
        it0 = trainer.iteration

        def on_progress(done: int, total_it: int, stats: dict[str, float]) -> None:
            log(f"[finetune] {done}/{total_it} reward {stats['reward']:.3f} rate {stats['rate']:.3f} "
                f"drop {stats['drop']:.4f} QP_I {stats['qp_i']:.1f} dQP {stats['mean_offset']:.2f} "
                f"loss {stats['loss_frame']:.3f}/{stats['loss_ctu']:.3f} {stats['seconds_per_iteration']:.2f} s/it "
                f"ETA {stats['eta_s'] / 60:.1f} min"
                + (f" | greedy reward {stats['greedy_reward']:.3f}" if "greedy_reward" in stats else ""))
            emit({"phase": "train", "done": done, "total": total_it, "eta_s": stats["eta_s"], "stats": stats})

        emit({"phase": "train", "done": trainer.iteration, "total": cfg.iterations,
              "eta_s": float("nan")})
        try:
            trainer.train(progress=on_progress, should_stop=stop, log_every=10, eval_every=eval_every)
        except KeyboardInterrupt:
            emit({"state": "cancelled", "phase": "train", "done": trainer.iteration, "total": cfg.iterations})
            raise
        t_train = time.perf_counter() - t_train0
        state = "done" if trainer.iteration >= cfg.iterations else "cancelled"
        seconds = {"caches": t_cache, "train": t_train, "total": time.perf_counter() - t_start,
                   "seconds_per_iteration": t_train / max(trainer.iteration - it0, 1)}
        agents.meta.update({"iterations_done": trainer.iteration, "seconds": seconds})
        trainer.save_checkpoint()
        if state == "done" and val_clips:
            _select_best(trainer, out, log)
        result = FinetuneResult(str(out), state, trainer.iteration, cfg.iterations, split.to_dict(),
                                int(sum(trainable.values())), trainable, int(total), seconds,
                                trainer.history[-1] if trainer.history else {})
        emit({"state": state, "phase": "done", "done": trainer.iteration, "total": cfg.iterations, "eta_s": 0.0,
              "result": result.to_dict()})
        return result
    except _Cancelled:
        emit({"state": "cancelled", "phase": status.get("phase", "setup")})
        return FinetuneResult(str(out), "cancelled", _saved_iteration(paths["state"]), cfg.iterations, {}, 0, {}, 0,
                              {"total": time.perf_counter() - t_start})
    except KeyboardInterrupt:
        status["state"] = "cancelled"
        _write_status(out, status)
        raise
    except BaseException as exc:
        status.update(state="failed", error=" ".join(str(exc).split())[:300] or exc.__class__.__name__)
        _write_status(out, status)
        raise


class _Cancelled(Exception):
    pass


def _select_best(trainer, out: Path, log: Callable[[str], None]) -> None:
    """Make ``out`` the best validation iteration's agents; the last iteration moves to ``X.last.pt``."""
    import shutil

    from dmic_core.agents.dmic import DMICAgents

    best, score = trainer.best_path(), trainer.best_score
    if best is None or score is None or not best.is_file():
        return
    iteration, reward = score
    shutil.copyfile(out, out.with_suffix(".last.pt"))
    chosen = DMICAgents.load(best)
    chosen.meta.update({**trainer.agents.meta, "selected_iteration": int(iteration),
                        "selected_on": "validation greedy reward (surrogate)", "val_reward": float(reward),
                        "val_scores": [[int(i), float(r)] for i, r in trainer.val_scores]})
    chosen.save(out)
    log(f"[finetune] selected iteration {iteration} (validation greedy reward {reward:.3f}); "
        f"last iteration kept in {out.with_suffix('.last.pt').name}")


def _saved_iteration(state: Path) -> int:
    """Iteration of the last checkpoint of a run (0 when there is none)."""
    if not state.is_file():
        return 0
    import torch

    return int(torch.load(state, map_location="cpu", weights_only=False).get("iteration", 0))
