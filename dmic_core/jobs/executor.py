"""The :class:`Executor` interface: where claimed tasks run, and how they ended (:class:`Outcome`).

Its own module so every executor (``local``, ``ray``) and the registry in
:mod:`dmic_core.jobs.executors` depend on it, and not on each other.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """How a task left the executor.

    ``status`` is what the task recorded itself (done / failed / queued / cancelled), or
    ``"died"`` when its process ended without recording anything (``reason`` says how).
    """

    task_id: int
    status: str
    reason: str = ""


class Executor(abc.ABC):
    """Runs claimed tasks; at most :attr:`slots` at once."""

    name: str = ""

    def __init__(self, workspace: str | Path, workers: int) -> None:
        self.workspace = str(workspace)
        self.slots = max(1, int(workers))

    @abc.abstractmethod
    def submit(self, task: dict[str, Any]) -> None:
        """Start a claimed task (only called while :meth:`free` > 0)."""

    @abc.abstractmethod
    def poll(self, timeout: float = 0.0) -> list[Outcome]:
        """Tasks that ended since the last call (waits up to ``timeout`` s for the first one)."""

    @abc.abstractmethod
    def running(self) -> set[int]:
        """Ids of the tasks now running here."""

    @abc.abstractmethod
    def kill(self, task_id: int) -> None:
        """Stop a task hard (its next :meth:`poll` reports it ``died``)."""

    def free(self) -> int:
        return self.slots - len(self.running())

    def shutdown(self) -> None:
        """Stop the workers (running tasks are interrupted and requeued by the next runner)."""
