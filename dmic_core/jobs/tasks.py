"""What a task does, run inside a worker process: the task kinds and the one entry point.

:func:`execute_task` is the only function executors call. It runs the task's kind with a progress
callback that records progress in the store and raises :class:`TaskCancelled` between frames
when the task or its job was cancelled; outputs go to a temporary folder next to the task's
``out_dir`` that is renamed into place only when everything in it is complete, then the task is
settled in the store (done, failed with the reason and maybe requeued, or cancelled).

Task kinds (``TASK_KINDS``):

* ``point``: one sweep point, :func:`dmic_core.sweep.run_point` (decide, encode, decode, segment,
  score) of ``(volume, method, setting)``.
* ``encode``: code the volume with the paper's frame QPs at ``QP_I = setting`` and nothing else
  (no segmentation): codec-only jobs and the job system's own tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from dmic_core.errors import DmicInputError
from dmic_core.jobs.store import JobStore

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


_CASES: dict[tuple, Any] = {}


def _case(params: dict[str, Any], volume: str):
    """The sweep case of a volume, kept per worker process (segmenting the original is costly)."""
    from dmic_core.sweep import load_case

    label = params.get("label")
    segmenter = params.get("segmenter", "builtin")
    stamp = tuple(_mtime(p) for p in (volume, label) if p)
    slices = _slices(params.get("slices"), volume, stamp[0])
    key = (volume, label, segmenter, slices, stamp)
    if key not in _CASES:
        _CASES.clear()
        seg: Any = segmenter
        if segmenter == "gt":
            from dmic_core.io import load_label, load_volume
            from dmic_core.segmentation import load_segmenter

            if not label:
                raise DmicInputError("the 'gt' segmenter needs a label volume", volume)
            full = load_label(label, like=load_volume(volume))
            seg = load_segmenter("gt", label=full if slices is None else full[slices[0]:slices[1]])
        _CASES[key] = load_case(volume, label, seg, slices=slices)
    return _CASES[key]


def _mtime(path: str) -> int:
    """Modification time of an input (cache key); a missing input is bad input, not a retry."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise DmicInputError("file not found", path) from None


def _slices(value: Any, volume: str, stamp: int = 0) -> tuple[int, int] | None:
    """``[a, b]`` as given, or ``"A:B"`` (either end optional, negatives from the end) resolved
    against this volume's frame count, so one batch setting fits volumes of different lengths."""
    if not value:
        return None
    if isinstance(value, str):
        from dmic_core.volume import parse_slices

        return parse_slices(value, _n_frames(volume, stamp), volume)
    return int(value[0]), int(value[1])


@functools.lru_cache(maxsize=64)
def _n_frames(volume: str, stamp: int) -> int:
    from dmic_core.io import load_volume

    return load_volume(volume).n_frames


def run_point_task(task: dict[str, Any], out_dir: Path, progress: Progress) -> dict[str, Any]:
    from dmic_core.sweep import PointSpec, run_point

    params = task["params"]
    case = _case(params, task["volume"])
    options = dict(params.get("options") or {})
    result = run_point(case, PointSpec(task["method"], float(task["setting"])), setup=_setup(params),
                       out_dir=out_dir, progress=progress, **options)
    summary = result.row()
    summary["paper_frame_qps"] = result.paper_frame_qps
    return summary


def run_encode_task(task: dict[str, Any], out_dir: Path, progress: Progress) -> dict[str, Any]:
    import numpy as np

    from dmic_core.codecs.qp import dmic_frame_qps
    from dmic_core.io import load_volume, save_nifti
    from dmic_core.jsonio import write_json
    from dmic_core.pipeline import code_volume

    volume = load_volume(task["volume"])
    slices = _slices(task["params"].get("slices"), task["volume"], _mtime(task["volume"]))
    if slices and tuple(slices) != (0, volume.n_frames):
        volume = volume.slab(*slices)
    qps = dmic_frame_qps(int(task["setting"]), volume.n_frames)
    coded = code_volume(volume, frame_qps=qps, setup=_setup(task["params"]), progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stream.hevc").write_bytes(coded.encode.bitstream)
    save_nifti(coded.recon, coded.recon.hu, out_dir / "recon.nii.gz")
    if coded.qp_map is not None:
        np.save(out_dir / "qp_map.npy", coded.qp_map.astype(np.int16))
    summary = coded.summary(volume)
    row = {"method": task["method"], "setting": float(task["setting"]), "bits": int(summary["bits"]),
           "bpp": float(summary["bpp"]), "psnr_hu": float(summary["psnr_hu"]),
           "paper_frame_qps": qps.tolist()}
    write_json(out_dir / "result.json", {**row, "summary": summary})
    return row


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
