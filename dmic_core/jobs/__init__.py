"""Persistent, resumable background jobs: a SQLite store, a runner and pluggable executors.

Used by the app's Compress page and by ``dmic batch``::

    store = JobStore(workspace)
    job_id = store.create_job(owner, [TaskSpec("point", image, "hevc", 32, out_dir, params), ...])
    ensure_runner(workspace)          # detached: survives page reloads and server restarts
    store.job_progress(job_id)        # counts, fraction, ETA
    store.cancel_job(job_id)          # seen between frames

See :mod:`dmic_core.jobs.store` for the task life cycle and :mod:`dmic_core.jobs.runner` for
recovery after a crash.
"""

from dmic_core.jobs.executor import Executor, Outcome
from dmic_core.jobs.executors import EXECUTORS, default_workers
from dmic_core.jobs.local_executor import LocalExecutor
from dmic_core.jobs.runner import Runner, RunnerBusy, ensure_runner, runner_alive, stop_runner
from dmic_core.jobs.store import FINISHED, STATUSES, JobStore, TaskSpec, job_status

__all__ = ["EXECUTORS", "Executor", "FINISHED", "JobStore", "LocalExecutor", "Outcome", "Runner", "RunnerBusy",
           "STATUSES", "TaskSpec", "default_workers", "ensure_runner", "job_status", "runner_alive",
           "stop_runner"]
