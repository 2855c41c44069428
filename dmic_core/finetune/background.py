"""Run a tuning in a detached background process (what the app's Fine-tune page does).

The process is ``python -m dmic_core.cli finetune ...`` in its own session, so it survives page
reloads and never runs in the Streamlit script thread; it reports through the files of
:func:`~dmic_core.finetune.files.run_paths` (``X.status.json``, ``X.log.jsonl``) and stops at the
next iteration (with a checkpoint) when ``X.cancel`` appears.

The checkpoint a workspace's later jobs should use is recorded in ``<workspace>/agents.json``
(:func:`set_active_checkpoint` / :func:`active_checkpoint`); jobs pass it to
``dmic_core.runs.run_point(..., agents=path)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dmic_core.finetune.config import FinetuneConfig
from dmic_core.finetune.files import read_status, run_paths

ROOT = Path(__file__).resolve().parents[2]
ACTIVE_FILE = "agents.json"


def command(cfg: FinetuneConfig, out: str | Path, resume: bool = False) -> list[str]:
    """The ``dmic finetune`` command line of ``cfg``."""
    argv = [sys.executable, "-m", "dmic_core.cli", "finetune", "--data", str(cfg.data), "--shots", str(cfg.shots),
            "--strategy", cfg.strategy, "--iterations", str(cfg.iterations), "--out", str(out),
            "--seed", str(cfg.seed), "--split-seed", str(cfg.split_seed), "--lr-frame", str(cfg.lr_frame),
            "--lr-ctu", str(cfg.lr_ctu), "--clip-frames", str(cfg.clip_frames),
            "--clips-per-volume", str(cfg.clips_per_volume), "--slab", str(cfg.slab),
            "--preset", cfg.preset or "default", "--segmenter", cfg.segmenter, "--workers", str(cfg.workers),
            "--cache-dir", str(cfg.cache_dir)]
    if cfg.pretrained:
        argv += ["--from", str(cfg.pretrained)]
    if cfg.threads:
        argv += ["--threads", str(cfg.threads)]
    if resume:
        argv.append("--resume")
    return argv


def start(cfg: FinetuneConfig, out: str | Path, resume: bool = False, env: dict[str, str] | None = None,
          before: list[list[str]] | None = None) -> int:
    """Start the tuning detached; returns its pid (also recorded in ``X.status.json``).

    ``before``: ``dmic`` subcommands (argument lists, e.g. ``["phantom", "--seed", ...]``) run first
    in the same background process, e.g. to generate the phantoms it trains on.
    """
    out = Path(out)
    paths = run_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths["cancel"].unlink(missing_ok=True)
    run_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    run_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), run_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with open(paths["stdout"], "ab") as fh:
        argv = command(cfg, out, resume)
        if before:
            import shlex

            steps = [[sys.executable, "-m", "dmic_core.cli", *b] for b in before] + [argv]
            argv = ["/bin/sh", "-c", " && ".join(" ".join(shlex.quote(a) for a in step) for step in steps)]
        proc = subprocess.Popen(argv, cwd=str(ROOT), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=run_env)
    from dataclasses import asdict

    # the configuration from the start: a new run's card names its strategy and K at once
    status = {"state": "starting", "phase": "setup", "pid": proc.pid, "out": str(out), "config": asdict(cfg)}
    tmp = paths["status"].with_name(paths["status"].name + ".tmp-start")
    tmp.write_text(json.dumps(status))
    tmp.replace(paths["status"])
    return proc.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    try:  # a finished child of this process stays a zombie until reaped
        done, _ = os.waitpid(int(pid), os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def run_state(out: str | Path) -> dict[str, Any]:
    """Status of a run with ``running`` corrected for a process that died without saying so."""
    status = read_status(out) or {"state": "absent"}
    if status.get("state") in ("running", "starting") and not alive(status.get("pid")):
        status = {**status, "state": "stopped", "note": "the process is gone (killed or crashed); resume to continue"}
    return status


def set_active_checkpoint(workspace: str | Path, checkpoint: str | Path | None) -> None:
    """Make ``checkpoint`` the agents a workspace's later jobs use (``None``: back to the shipped ones)."""
    path = Path(workspace) / ACTIVE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"checkpoint": None if checkpoint is None else str(checkpoint)}))
    tmp.replace(path)


def active_checkpoint(workspace: str | Path) -> str | None:
    """The checkpoint chosen with :func:`set_active_checkpoint`, if it still exists."""
    try:
        ckpt = json.loads((Path(workspace) / ACTIVE_FILE).read_text()).get("checkpoint")
    except (OSError, ValueError):
        return None
    return ckpt if ckpt and Path(ckpt).is_file() else None
