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

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from dmic_core.finetune.caches import Progress, build_caches, clip_specs, load_clips
from dmic_core.finetune.config import FinetuneConfig, FinetuneResult, default_pretrained, make_split
from dmic_core.finetune.data import file_fingerprint, segmenter_fingerprint
from dmic_core.finetune.files import write_status, run_paths


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
        write_status(out, status)
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
                            threads=cfg.threads, advantage=cfg.actor_update,
                            lambda_zero_prob=cfg.lambda_zero_prob)
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
        write_status(out, status)
        raise
    except BaseException as exc:
        status.update(state="failed", error=" ".join(str(exc).split())[:300] or exc.__class__.__name__)
        write_status(out, status)
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
                        "selected_on": "validation greedy reward (surrogate) among behaving iterations",
                        "val_reward": float(reward), "val_scores": [list(s) for s in trainer.val_scores]})
    chosen.save(out)
    log(f"[finetune] selected iteration {iteration} (validation greedy reward {reward:.3f}); "
        f"last iteration kept in {out.with_suffix('.last.pt').name}")


def _saved_iteration(state: Path) -> int:
    """Iteration of the last checkpoint of a run (0 when there is none)."""
    if not state.is_file():
        return 0
    import torch

    return int(torch.load(state, map_location="cpu", weights_only=False).get("iteration", 0))
