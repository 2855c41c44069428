"""What a task does, run inside a worker process: the task kinds and the one entry point.

:func:`execute_task` is the only function executors call. It runs the task's kind with a progress
callback that records progress in the store and raises :class:`TaskCancelled` between frames
when the task or its job was cancelled; outputs go to a temporary folder next to the task's
``out_dir`` that is renamed into place only when everything in it is complete, then the task is
settled in the store (done, failed with the reason and maybe requeued, or cancelled).

Task kinds (``TASK_KINDS``):

* ``point``: one point, :func:`dmic_core.runs.run_point` (decide, encode, decode, segment,
  score, write the folder) of ``(volume, method, setting)`` on the worker's cached case.
* ``encode``: code the volume with the paper's frame QPs at ``QP_I = setting`` and nothing else
  (no segmentation): codec-only jobs and the job system's own tests.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from dmic_core.errors import DmicInputError
from dmic_core.jobs.store import JobStore, TaskSpec

Progress = Callable[[int, int], None]

#: Least time between two progress writes (and cancel checks) of one task.
PROGRESS_INTERVAL_S = 0.2


class TaskCancelled(Exception):
    """Raised from the progress callback when the task was asked to stop.

    Deliberately not a ``RuntimeError``: codecs wrap those as codec failures.
    """


#: Errors a retry cannot fix: the input itself is unusable, or the request is invalid.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (DmicInputError, TaskCancelled)


# --- task kinds -------------------------------------------------------------------------------

def _setup(params: dict[str, Any]):
    from dmic_core.pipeline import TASK_CODING, CodingSetup

    raw = params.get("setup") or {}
    if not raw:
        return TASK_CODING
    window = raw["window"] if "window" in raw else TASK_CODING.window  # None: the depth's default
    return CodingSetup(codec=raw.get("codec", "x265"), preset=raw.get("preset"),
                       bit_depth=int(raw.get("bit_depth", TASK_CODING.bit_depth)),
                       window=None if window is None else (float(window[0]), float(window[1])))


def _case_spec(params: dict[str, Any], volume: str):
    from dmic_core.runs import CaseSpec

    slices = params.get("slices")
    return CaseSpec(volume, params.get("label"), params.get("segmenter", "builtin"),
                    slices if not slices or isinstance(slices, str) else (int(slices[0]), int(slices[1])),
                    params.get("roi"))


def run_point_task(task: dict[str, Any], out_dir: Path, progress: Progress) -> dict[str, Any]:
    """One point of the job's volume: :func:`dmic_core.runs.run_point` on the worker's cached case."""
    from dmic_core.methods import PointSpec
    from dmic_core.runs import cached_case, run_point

    params = task["params"]
    case = cached_case(_case_spec(params, task["volume"]))
    options = dict(params.get("options") or {})
    result = run_point(case, PointSpec(task["method"], float(task["setting"])), setup=_setup(params),
                       out_dir=out_dir, progress=progress, **options)
    return result.summary()


def run_encode_task(task: dict[str, Any], out_dir: Path, progress: Progress) -> dict[str, Any]:
    from dmic_core.codecs.qp import dmic_frame_qps
    from dmic_core.evaluation import write_point_folder
    from dmic_core.io import load_volume
    from dmic_core.pipeline import code_volume
    from dmic_core.runs import resolve_slices

    volume = load_volume(task["volume"])
    slices = resolve_slices(task["params"].get("slices"), task["volume"])
    if slices and tuple(slices) != (0, volume.n_frames):
        volume = volume.slab(*slices)
    qps = dmic_frame_qps(int(task["setting"]), volume.n_frames)
    coded = code_volume(volume, frame_qps=qps, setup=_setup(task["params"]), progress=progress)
    summary = coded.summary(volume)
    row = {"method": task["method"], "setting": float(task["setting"]), "bits": int(summary["bits"]),
           "bpp": float(summary["bpp"]), "psnr_hu": float(summary["psnr_hu"]),
           "paper_frame_qps": qps.tolist()}
    write_point_folder(out_dir, coded, {**row, "summary": summary})
    return row


def point_tasks(image: str | Path, specs: Iterable[Any], folder: str | Path, params: dict[str, Any],
                dmic_options: dict[str, Any] | None = None) -> list[TaskSpec]:
    """One ``point`` task per :class:`~dmic_core.methods.PointSpec` of ``image``, its outputs in
    ``folder/<method>_<setting>``; ``dmic_options`` (the agents) go to the DMIC tasks only."""
    return [TaskSpec("point", str(image), s.method, s.setting, str(Path(folder) / f"{s.method}_{s.setting:g}"),
                     {**params, "options": dmic_options} if dmic_options and s.method == "dmic" else params)
            for s in specs]


TASK_KINDS: dict[str, Callable[[dict[str, Any], Path, Progress], dict[str, Any]]] = {
    "point": run_point_task,
    "encode": run_encode_task,
}


# --- the entry point --------------------------------------------------------------------------

def describe_error(exc: BaseException) -> str:
    """One line for the ``error`` column: the exception's type and message, no traceback."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    if isinstance(exc, DmicInputError):
        return text
    if isinstance(exc, OSError) and exc.errno == 28:
        return f"disk full: {text}"
    return f"{exc.__class__.__name__}: {text}"


def execute_task(db_workspace: str | Path, task: dict[str, Any]) -> str:
    """Run one claimed task to its end and settle it in the store; returns its new status.

    Never raises for a task's own failure (that is recorded); only a store failure escapes.
    """
    store = JobStore(db_workspace)
    task_id = int(task["id"])
    store.set_worker(task_id, os.getpid())
    final = Path(task["out_dir"])
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_S and done < total:
            return
        last[0] = now
        if store.report_progress(task_id, done, total):
            raise TaskCancelled("cancelled")

    try:
        kind = TASK_KINDS.get(task["kind"])
        if kind is None:
            raise DmicInputError(f"unknown task kind {task['kind']!r}")
        if store.cancel_requested(task_id):
            raise TaskCancelled("cancelled")
        remove_stale_partials(final)
        partial.mkdir(parents=True)
        task = _with_anchor_rate(store, task)
        summary = kind(task, partial, progress)
        if not (partial / "result.json").is_file():
            raise RuntimeError("the task wrote no result.json")
        _publish(partial, final)
    except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, then we go on
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, TaskCancelled) or store.cancel_requested(task_id):
            store.mark_cancelled(task_id, "cancelled")
            return "cancelled"
        if isinstance(exc, KeyboardInterrupt):
            store.requeue_interrupted([task_id])
            raise
        if os.environ.get("DMIC_JOBS_TRACEBACKS"):
            traceback.print_exc()
        return store.fail(task_id, describe_error(exc), retry=not isinstance(exc, NOT_RETRYABLE))
    store.finish(task_id, final / "result.json", summary)
    return "done"


def _with_anchor_rate(store: JobStore, task: dict[str, Any]) -> dict[str, Any]:
    """Rate control targets the constant-QP anchor's rate: reuse it when the job already has it."""
    if task["kind"] != "point" or task["method"] != "ratecontrol":
        return task
    for other in store.tasks(task["job_id"], status="done"):
        if (other["method"] == "hevc" and other["volume"] == task["volume"]
                and other["setting"] == task["setting"] and other["summary"]):
            params = dict(task["params"])
            params["options"] = {**(params.get("options") or {}), "anchor_bits": other["summary"]["bits"]}
            return {**task, "params": params}
    return task


def remove_stale_partials(final: Path) -> None:
    """Drop temporary folders of earlier attempts of this task (a killed worker leaves its own).

    Only one attempt of a task runs at a time, so every ``.{name}.partial-*`` / ``.old-*`` sibling
    is an abandoned attempt: never read, and removed here so a crash cannot fill the disk.
    """
    if not final.parent.is_dir():
        return
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in final.parent.glob(f".{final.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _publish(partial: Path, final: Path) -> None:
    """Move a complete output folder into place (an older one of the same task is replaced)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
