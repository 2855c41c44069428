"""The tuning runs the tables need: which, where their checkpoints are, and training the missing ones.

Runs are trained in ``cfg.train_workers`` spawned processes (one torch thread each) after the
shared surrogate caches are built once; a ``.lock`` beside a checkpoint says which live process is
training it, so two experiment processes never train the same run twice.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from dmic_core.agents.strategies import STRATEGY_NAMES
from dmic_core.experiments.config import ExperimentConfig, Log, RunSpec
from dmic_core.finetune.caches import build_caches, clip_specs
from dmic_core.finetune.config import make_split


def _spawn():
    """Worker processes are spawned: forking a parent whose torch thread pool is running can hang."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


def needed_runs(tables: Iterable[str], cfg: ExperimentConfig) -> list[RunSpec]:
    runs: list[RunSpec] = []
    for t in tables:
        if t in ("table1", "table4"):
            runs.append(RunSpec("a2c", 1, cfg.iterations))
        if t in ("table2", "fig2"):
            runs += [RunSpec(s, k, cfg.variant_iterations) for s in ("a2c", "full") for k in cfg.shots]
        if t in ("table3", "fig2"):
            runs += [RunSpec(s, 1, cfg.variant_iterations) for s in STRATEGY_NAMES if s != "pretrained"]
    return list(dict.fromkeys(runs))


def checkpoint_path(cfg: ExperimentConfig, run: RunSpec) -> Path:
    return Path(cfg.work_dir) / "checkpoints" / f"s{cfg.split_seed}" / f"{run.name}.pt"


def pretrained_path(cfg: ExperimentConfig) -> Path:
    from dmic_core.finetune.config import default_pretrained

    return Path(cfg.pretrained) if cfg.pretrained else default_pretrained()


def run_complete(path: Path, iterations: int) -> bool:
    if not path.is_file():
        return False
    import torch

    meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
    return int(meta.get("iterations_done", -1)) >= iterations


def _train_one(cfg_dict: dict[str, Any], run: tuple[str, int, int], out: str, log_path: str) -> dict[str, Any]:
    """Worker: one tuning run (resumable), its log in ``log_path``."""
    import torch

    from dmic_core.finetune.tune import finetune

    torch.set_num_threads(1)
    cfg = ExperimentConfig(**cfg_dict)
    ft = cfg.finetune_config(*run)
    with open(log_path, "a") as fh:
        def log(msg: str) -> None:
            fh.write(msg + "\n")
            fh.flush()

        result = finetune(ft, out, resume=True, log=log)
    return result.to_dict()


def _lock_path(cfg: ExperimentConfig, run: RunSpec) -> Path:
    return checkpoint_path(cfg, run).with_suffix(".lock")


def _take_lock(path: Path) -> bool:
    """Claim a run for this process (another live process holding it keeps it)."""
    from dmic_core.finetune.background import alive

    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and alive(pid):
                return False
            path.unlink(missing_ok=True)  # stale lock of a dead process
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def run_priority(run: RunSpec, cfg: ExperimentConfig) -> tuple:
    """Training order: the main result (a2c, 1 shot) first, then by shots, cheapest first."""
    main = run == RunSpec("a2c", 1, cfg.iterations)
    cost = run.shots * run.iterations * (2 if run.strategy in ("full", "a2c_fc") else 1)
    return (not main, run.shots, cost)


def train_runs(cfg: ExperimentConfig, runs: Sequence[RunSpec], log: Log = print) -> dict[str, dict[str, Any]]:
    """Make sure every run's checkpoint exists: build the shared caches once, then train the
    missing runs in ``cfg.train_workers`` processes (one torch thread each). A run another live
    process is training (its ``.lock``) is waited for instead of trained twice."""
    todo = [r for r in runs if not run_complete(checkpoint_path(cfg, r), r.iterations)]
    results: dict[str, dict[str, Any]] = {}
    if not todo:
        return results
    k_max = max(r.shots for r in todo)
    ft = cfg.finetune_config("a2c", k_max, 0)
    split, cases = make_split(ft)
    t0 = time.perf_counter()
    build_caches(clip_specs(ft, split, cases), ft, log=log)
    todo.sort(key=lambda r: run_priority(r, cfg))
    mine = [r for r in todo if _take_lock(_lock_path(cfg, r))]
    others = [r for r in todo if r not in mine]
    log(f"[experiments] caches ready in {time.perf_counter() - t0:.0f} s; training {len(mine)} run(s): "
        + ", ".join(r.name for r in mine) + (f"; waiting for {', '.join(r.name for r in others)} (another process)"
                                             if others else ""))
    log_dir = Path(cfg.work_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if mine:
            with ProcessPoolExecutor(mp_context=_spawn(), max_workers=max(1, min(cfg.train_workers, len(mine)))) as pool:
                futs = {pool.submit(_train_one, asdict(cfg), (r.strategy, r.shots, r.iterations),
                                    str(checkpoint_path(cfg, r)), str(log_dir / f"{r.name}.log")): r for r in mine}
                for fut in as_completed(futs):
                    r = futs[fut]
                    res = fut.result()
                    results[r.name] = res
                    _lock_path(cfg, r).unlink(missing_ok=True)
                    log(f"[experiments] trained {r.name}: {res['status']} at {res['iteration']} it, "
                        f"{res['trainable_parameters']} trainable, {res['seconds'].get('train', 0):.0f} s training")
    finally:
        for r in mine:
            lock = _lock_path(cfg, r)
            if lock.is_file() and lock.read_text().strip() == str(os.getpid()):
                lock.unlink(missing_ok=True)
    for r in others:
        while not run_complete(checkpoint_path(cfg, r), r.iterations):
            if not _lock_path(cfg, r).is_file():
                raise RuntimeError(f"run {r.name} was abandoned by the process training it; run again to train it")
            time.sleep(10)
    return results


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    import torch

    return dict(torch.load(Path(path), map_location="cpu", weights_only=True).get("meta", {}))


def parameter_counts(path: str | Path) -> tuple[int, int]:
    """(trainable, total) parameters recorded in a checkpoint (pretrained: 0 trainable)."""
    meta = checkpoint_meta(path)
    if "trainable_parameters" in meta and meta.get("kind") == "finetuned":
        return int(meta["trainable_parameters"]), int(meta.get("total_parameters", 0))
    from dmic_core.agents.dmic import DMICAgents

    agents = DMICAgents.load(path)
    return 0, sum(p.numel() for p in agents.parameters())
