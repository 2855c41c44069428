"""The ``local`` executor: long-lived worker processes on this machine.

Each worker runs :func:`dmic_core.jobs.tasks.execute_task` for the tasks it is sent, one at a time,
and keeps the last volume it segmented cached; a worker that dies is reported and replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from dmic_core.jobs.executor import Executor, Outcome


def _worker_main(workspace: str, conn: Connection, threads: int) -> None:
    """A worker process: run the tasks it is sent, one at a time, until told to stop."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when workers stop
    from dmic_core.jobs.tasks import execute_task
    from dmic_core.runtime import configure_allocator

    configure_allocator()

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        status = execute_task(workspace, task)
        try:
            conn.send((int(task["id"]), status))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Slot:
    process: Any
    conn: Connection
    task_id: int | None = None


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "worker process vanished"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process was killed ({name})"
    return f"worker process exited with status {exitcode}"


class LocalExecutor(Executor):
    """``workers`` processes on this machine, started with ``spawn`` and restarted when they die."""

    name = "local"

    def __init__(self, workspace: str | Path, workers: int) -> None:
        super().__init__(workspace, workers)
        self._ctx = mp.get_context("spawn")
        self._threads = max(1, (os.cpu_count() or 1) // self.slots)
        self._slots: list[_Slot] = []

    def _start_slot(self) -> _Slot:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(self.workspace, child, self._threads),
                                    name="dmic-job-worker", daemon=True)
        process.start()
        child.close()
        slot = _Slot(process, parent)
        self._slots.append(slot)
        return slot

    def submit(self, task: dict[str, Any]) -> None:
        idle = next((s for s in self._slots if s.task_id is None and s.process.is_alive()), None)
        if idle is None:
            if len(self._slots) >= self.slots:
                raise RuntimeError("no free worker")
            idle = self._start_slot()
        idle.task_id = int(task["id"])
        idle.conn.send(task)

    def running(self) -> set[int]:
        return {s.task_id for s in self._slots if s.task_id is not None}

    def worker_pids(self) -> dict[int, int]:
        """Task id -> worker process id (for tests and the runner's log)."""
        return {s.task_id: s.process.pid for s in self._slots if s.task_id is not None}

    def poll(self, timeout: float = 0.0) -> list[Outcome]:
        busy = [s for s in self._slots if s.task_id is not None]
        if busy and timeout > 0:
            wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout)
        outcomes: list[Outcome] = []
        for slot in list(self._slots):
            if slot.task_id is not None and slot.conn.poll():
                try:
                    task_id, status = slot.conn.recv()
                    outcomes.append(Outcome(task_id, status))
                    slot.task_id = None
                    continue
                except (EOFError, OSError):
                    pass
            if not slot.process.is_alive():
                slot.process.join(0)
                if slot.task_id is not None:
                    outcomes.append(Outcome(slot.task_id, "died", describe_exit(slot.process.exitcode)))
                slot.conn.close()
                self._slots.remove(slot)
        return outcomes

    def kill(self, task_id: int) -> None:
        for slot in self._slots:
            if slot.task_id == task_id and slot.process.is_alive():
                slot.process.kill()

    def shutdown(self) -> None:
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for slot in self._slots:
            slot.process.join(2.0 if slot.task_id is None else 0.1)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(2.0)
        self._slots.clear()
