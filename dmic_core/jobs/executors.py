"""Where tasks run: the executors by name, and how many tasks run at once by default.

The runner claims tasks from the store and hands them to an executor (:class:`~dmic_core.jobs.executor.Executor`);
the executor runs :func:`dmic_core.jobs.tasks.execute_task` somewhere and reports back which tasks
ended and how. ``local`` (:mod:`dmic_core.jobs.local_executor`) keeps worker processes on this
machine; ``ray`` (:mod:`dmic_core.jobs.ray_executor`) makes each task a Ray remote call and is
imported only when asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from dmic_core.jobs.executor import Executor
from dmic_core.jobs.local_executor import LocalExecutor


def _ray_executor(workspace: str | Path, workers: int, **options: Any) -> Executor:
    """The Ray executor, imported only when asked for (Ray is heavy and optional)."""
    from dmic_core.jobs.ray_executor import RayExecutor

    return RayExecutor(workspace, workers, **options)


#: Executors by name (``dmic batch --executor``, ``python -m dmic_core.jobs.worker --executor``).
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": _ray_executor}


def default_workers() -> int:
    """Concurrent tasks per machine: ``$DMIC_JOB_WORKERS``, else half the cores (1..4).

    One encode keeps about two cores busy (x265 worker threads plus the segmenter), so on the
    2-core reference machine one task runs at a time and the others queue.
    """
    env = os.environ.get("DMIC_JOB_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(4, (os.cpu_count() or 1) // 2))
