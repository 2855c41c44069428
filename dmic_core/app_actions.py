"""The web app's actions: one library function per thing a user starts from a page.

Pages collect widget values, call one of these and show what it returns; everything an action
assembles (the tasks of a job, its recorded parameters, the background fine-tuning command) lives
here, where tests and other front ends use it without Streamlit. A session is ``owner`` (its
workspace id) with its files under ``workspace``; the jobs of all sessions share one store.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from dmic_core.defaults import COMPARISON_LAMBDAS, COMPARISON_QPS
from dmic_core.jobs import JobStore, TaskSpec, ensure_runner
from dmic_core.jobs.tasks import point_tasks

#: The app's shared runner exits after this many idle seconds (a page restarts it when needed).
RUNNER_IDLE_EXIT_S = 300.0
#: What "Compare on current volume" of a fine-tuned checkpoint runs: DMIC against HEVC, at the
#: rate points :data:`~dmic_core.defaults.COMPARISON_QPS` / ``COMPARISON_LAMBDAS``.
COMPARISON_METHODS = ("hevc", "dmic")
COMPARISON_SETUP = {"codec": "x265", "bit_depth": 12}


def start_app_runner(jobs_dir: str | Path) -> bool:
    """Start the runner of the app's job store unless one is alive; True when this call started it."""
    return ensure_runner(jobs_dir, idle_exit=RUNNER_IDLE_EXIT_S)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def compress_tasks(job_dir: Path, current: dict[str, Any], methods: Sequence[str], qps: Sequence[float],
                   lambdas: Sequence[float], setup: dict[str, Any], segmenter: str,
                   agents: str | None = None) -> list[TaskSpec]:
    """One ``point`` task per (method, setting) of the sweep's own point list, outputs under ``job_dir``.

    ``agents``: DMIC's checkpoint (None: the sweep's default agents); only DMIC tasks carry it.
    """
    from dmic_core.methods import default_specs

    params = {"label": current.get("label"), "segmenter": segmenter, "setup": setup}
    return point_tasks(current["image"], default_specs(methods, qps, lambdas), job_dir, params,
                       {"agents": agents} if agents else None)


def start_compress_job(store: JobStore, owner: str, workspace: Path, current: dict[str, Any],
                       methods: Sequence[str], qps: Sequence[float], lambdas: Sequence[float],
                       setup: dict[str, Any], segmenter: str, agents: str | None = None) -> tuple[str, int]:
    """Compress page, "Start job": queue the chosen methods and rate points on the current volume and
    make sure the runner is up. Returns the job id and its number of tasks."""
    job_id = new_job_id()
    tasks = compress_tasks(Path(workspace) / "jobs" / job_id, current, methods, sorted(qps), sorted(lambdas),
                           setup, segmenter, agents)
    store.create_job(owner, tasks, job_id=job_id, title=f"{', '.join(methods)} on {current['name']}"[:120],
                     params={"image": current["image"], "label": current.get("label"), "name": current["name"],
                             "segmenter": segmenter, "setup": setup, "methods": list(methods)})
    start_app_runner(store.workspace)
    return job_id, len(tasks)


def start_comparison_job(store: JobStore, owner: str, workspace: Path, checkpoint: Path,
                         current: dict[str, Any]) -> str:
    """Fine-tune page, "Compare on current volume": DMIC with ``checkpoint`` against HEVC on the
    current volume, scored by the built-in segmenter. Returns the job id."""
    from dmic_core.methods import default_specs

    job_id = new_job_id()
    job_dir = Path(workspace) / "jobs" / job_id
    params = {"label": current.get("label"), "segmenter": "builtin", "setup": dict(COMPARISON_SETUP),
              "options": {"agents": str(checkpoint)}}
    specs = default_specs(list(COMPARISON_METHODS), list(COMPARISON_QPS), list(COMPARISON_LAMBDAS))
    tasks = point_tasks(current["image"], specs, job_dir, params)
    store.create_job(owner, tasks, job_id=job_id,
                     title=f"dmic (tuned {checkpoint.parent.name}), hevc on {current['name']}"[:120],
                     params={"image": current["image"], "label": current.get("label"), "name": current["name"],
                             "segmenter": "builtin", "setup": params["setup"], "methods": list(COMPARISON_METHODS),
                             "agents": str(checkpoint)})
    start_app_runner(store.workspace)
    return job_id


def start_finetune_run(ft_dir: Path, data: dict[str, Any], strategy: str, shots: int, iterations: int,
                       val_volumes: int = 0) -> Path:
    """Fine-tune page, "Start fine-tuning": a detached tuning run; returns its checkpoint path.

    ``data``: ``{"kind": "phantoms", "seed", "count", "slices"}`` (generated first, in the same
    background process) or ``{"kind": "folder", "path"}`` (an ImageCAS-layout folder).
    """
    from dmic_core.finetune import FinetuneConfig
    from dmic_core.finetune.background import start

    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    out = Path(ft_dir) / "runs" / run_id / "agents.pt"
    pre: list[list[str]] = []
    if data["kind"] == "phantoms":
        folder = Path(ft_dir) / "data" / f"phantoms-{data['seed']}-{data['count']}-{data['slices']}"
        pre.append(["phantom", "--seed", str(data["seed"]), "--count", str(data["count"]), "--slices",
                    str(data["slices"]), "--out", str(folder)])
    else:
        folder = Path(data["path"])
    cfg = FinetuneConfig(data=str(folder), shots=shots, strategy=strategy, iterations=iterations,
                         val_volumes=val_volumes)
    start(cfg, out, before=pre)
    return out


def write_example_phantom(folder: Path, seed: int, n_slices: int) -> tuple[Path, Path]:
    """Home page, "Run the example": a small phantom and its vessel label as NIfTI in ``folder``."""
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.io import save_nifti

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume, label = generate_phantom(seed, n_slices=n_slices)
    image = save_nifti(volume, volume.hu, folder / "image.nii.gz")
    label_path = save_nifti(volume, label.astype("uint8"), folder / "label.nii.gz")
    return image, label_path
