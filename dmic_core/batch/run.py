"""Run a batch: submit its tasks to the batch folder's job store and drive a runner to the end.

The runner is the app's (:class:`dmic_core.jobs.Runner`) with the ``local`` or ``ray`` executor,
run in a thread of this process while the main thread draws the progress bar. If another process
already serves the folder (a second ``dmic batch`` on the same ``--out``), this one only watches.
Ctrl-C or SIGTERM stops the runner: running tasks go back to the queue (interrupted, not failed)
and the next ``dmic batch`` on the folder picks them up; finished tasks are never redone.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmic_core.batch.aggregate import write_reports
from dmic_core.batch.plan import BatchConfig, submit, validate
from dmic_core.batch.progress import StoreProgress
from dmic_core.datasets.discovery import VolumeEntry, discover
from dmic_core.jobs import JobStore, Runner, RunnerBusy, default_workers, runner_alive

#: Seconds between two redraws of the progress bar.
REFRESH_S = 0.5


@dataclass
class BatchResult:
    """What a batch run ended with."""

    job_id: str
    counts: dict[str, int]
    outputs: dict[str, Path]
    seconds: float
    tasks_run: int
    executor: str
    workers: int
    interrupted: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.counts.get("queued", 0) == 0 and self.counts.get("running", 0) == 0

    @property
    def tasks_per_second(self) -> float:
        return self.tasks_run / self.seconds if self.seconds > 0 else 0.0


def run_batch(dataset: str | Path, out: str | Path, config: BatchConfig, *, executor: str = "local",
              address: str | None = None, workers: int | None = None, retry_failed: bool = False,
              progress: bool = True, entries: list[VolumeEntry] | None = None) -> BatchResult:
    """Run (or resume) the batch of ``dataset`` with ``config`` in folder ``out``.

    Args:
        executor: ``local`` (worker processes) or ``ray`` (a local runtime, or ``address``).
        workers: concurrent tasks (default: local half the cores, 1..4; ray the cluster's CPUs or,
            for a local runtime, all cores).
        retry_failed: give failed tasks of an earlier run a fresh pair of attempts.

    Raises:
        DmicInputError: the dataset or the settings cannot be used (nothing is submitted).
    """
    import os

    out = Path(out)
    entries = entries if entries is not None else discover(dataset)
    validate(config, entries, dataset)
    store = JobStore(out)
    job_id, _tasks = submit(store, entries, config, out, dataset)
    if retry_failed:
        store.retry_failed(job_id)
    if executor == "ray":
        options: dict[str, Any] = {"address": address, "use_cluster_cpus": bool(address) and not workers}
        workers = workers or (os.cpu_count() or 1)
    else:
        options = {}
        workers = workers or default_workers()
    before = _finished(store, job_id)
    start = time.monotonic()
    bar = StoreProgress(store, job_id, workers, enabled=progress)
    runner = Runner(out, workers=workers, executor=executor, idle_exit=0.5, executor_options=options)
    owns_ray = False
    if executor == "ray" and not runner_alive(out):
        from dmic_core.jobs.ray_executor import init_ray

        owns_ray = init_ray(address, workers)  # here, in the main thread, where Ray wants its signals
    try:
        interrupted = _drive(runner, store, bar)
    finally:
        if owns_ray:
            from dmic_core.jobs.ray_executor import shutdown_ray

            shutdown_ray()
    seconds = time.monotonic() - start
    bar.update()
    bar.close()
    counts = store.job_progress(job_id)["counts"]
    meta = {"dataset": str(dataset), "volumes": len(entries), "methods": list(config.methods),
            "segmenter": config.segmenter, "setup": config.setup, "slices": config.slices}
    outputs = write_reports(out, store, job_id, meta)
    failures = [{"case_id": t["params"].get("case_id"), "method": t["method"], "setting": t["setting"],
                 "attempts": t["attempts"], "error": t["error"]} for t in store.tasks(job_id, status="failed")]
    return BatchResult(job_id, counts, outputs, seconds, _finished(store, job_id) - before, executor,
                       runner.executor.slots if runner.executor else workers, interrupted, failures)


def _finished(store: JobStore, job_id: str) -> int:
    counts = store.job_progress(job_id)["counts"]
    return counts["done"] + counts["failed"]


def _unfinished(store) -> int:
    """Tasks still to run; 1 while the store cannot be read (a full disk), so the wait goes on and
    the runner's own state decides when it ends."""
    try:
        return store.unfinished()
    except sqlite3.OperationalError:
        return 1


def _drive(runner: Runner, store: JobStore, bar: StoreProgress) -> bool:
    """Run ``runner`` in a thread until the queue is empty; returns True when interrupted."""
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            runner.run()
        except RunnerBusy:
            pass  # another process serves this folder: we watch it instead
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    thread = threading.Thread(target=serve, name="dmic-batch-runner", daemon=True)
    interrupted = threading.Event()

    def stop(*_: object) -> None:
        interrupted.set()
        runner.stop()

    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    try:
        thread.start()
        while thread.is_alive() or (not interrupted.is_set() and runner_alive(runner.workspace)
                                    and _unfinished(store) > 0):
            thread.join(REFRESH_S)
            try:
                bar.update()
            except sqlite3.OperationalError:  # a full disk or busy store: the next refresh draws it
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors:
        raise errors[0]
    return interrupted.is_set()
