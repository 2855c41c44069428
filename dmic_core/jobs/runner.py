"""The runner: one process per workspace that feeds queued tasks to an executor.

Started detached (``python -m dmic_core.jobs.worker --workspace DIR``, or :func:`ensure_runner`)
so jobs outlive the browser tab and the Streamlit server. At most one runner per workspace holds
``runner.lock`` (``flock``); a second one exits at once. When a runner starts it puts tasks left
``running`` by a runner that is gone back in the queue (their finished outputs are never
touched, done tasks are skipped). It exits after ``idle_exit`` seconds with nothing to do; the
app starts a new one when work arrives.

The log (``runner.log``) holds task ids, methods, statuses and durations only: never file names,
which may carry patient names.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

from dmic_core.jobs.executor import Executor
from dmic_core.jobs.executors import EXECUTORS, default_workers
from dmic_core.jobs.store import JobStore, pid_alive
from dmic_core.jobs.tasks import remove_stale_partials

LOCK_NAME = "runner.lock"
LOG_NAME = "runner.log"

#: Seconds a running task may ignore a cancel before its worker process is killed.
CANCEL_GRACE_S = 15.0
#: Seconds between checks for tasks whose worker is gone.
RECOVER_INTERVAL_S = 5.0
#: Seconds a starting runner keeps trying for a lock held by someone else (a probe holds it for
#: microseconds; a runner for its whole life).
LOCK_PROBE_GRACE_S = 2.0
#: Most seconds :func:`ensure_runner` waits for the runner it started to take the lock.
RUNNER_START_TIMEOUT_S = 60.0

log = logging.getLogger("dmic.jobs")


class RunnerBusy(RuntimeError):
    """Another runner already serves this workspace."""


def _take_lock(workspace: Path) -> IO[str]:
    """Hold the workspace's runner lock, or raise :class:`RunnerBusy` when a runner holds it.

    :func:`runner_alive` probes by taking the same lock for an instant, so a lock that is busy only
    for :data:`LOCK_PROBE_GRACE_S` is a probe (several pages asking at once while this runner
    starts), not a runner: without the grace a busy machine could leave queued work with no runner.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    fh = open(workspace / LOCK_NAME, "a+")
    deadline = time.monotonic() + LOCK_PROBE_GRACE_S
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.close()
                raise RunnerBusy(str(workspace)) from None
            time.sleep(0.02)
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def runner_alive(workspace: str | Path) -> bool:
    """Whether a runner holds this workspace's lock now."""
    path = Path(workspace) / LOCK_NAME
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


class Runner:
    """Claims tasks fairly and runs them on an executor until idle (or stopped)."""

    def __init__(self, workspace: str | Path, *, workers: int | None = None, executor: str = "local",
                 idle_exit: float | None = 60.0, executor_options: dict[str, Any] | None = None) -> None:
        self.workspace = Path(workspace)
        self.store = JobStore(self.workspace)
        self.workers = workers or default_workers()
        self.executor_name = executor
        self.executor_options = dict(executor_options or {})
        self.idle_exit = idle_exit
        self.id = uuid.uuid4().hex[:12]
        self.executor: Executor | None = None
        self._stop = False
        self._cancel_seen: dict[int, float] = {}

    def stop(self, *_: object) -> None:
        self._stop = True

    def recover(self) -> int:
        """Requeue tasks marked running whose runner is not this one and whose worker is gone."""
        mine = self.executor.running() if self.executor else set()
        lost = [t["id"] for t in self.store.tasks(status="running")
                if t["id"] not in mine and (t["runner_id"] != self.id or not t["worker_pid"])
                and not pid_alive(t["worker_pid"])]
        if lost:
            self._drop_partials(lost)
            n = self.store.requeue_interrupted(lost)
            log.info("requeued %d interrupted task(s): %s", n, lost)
            return n
        return 0

    def run(self) -> None:
        """Serve the workspace until idle for ``idle_exit`` seconds (forever when None) or stopped."""
        lock = _take_lock(self.workspace)
        try:
            self.executor = EXECUTORS[self.executor_name](self.workspace, self.workers, **self.executor_options)
        except BaseException:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
            raise
        log.info("runner %s started: executor=%s workers=%d", self.id, self.executor_name, self.executor.slots)
        idle_since = time.monotonic()
        last_recover = 0.0
        try:
            self.recover()
            while not self._stop:
                for outcome in self.executor.poll(timeout=0.25):
                    self._settle(outcome)
                now = time.monotonic()
                if now - last_recover > RECOVER_INTERVAL_S:
                    self.recover()
                    last_recover = now
                self._enforce_cancels()
                while self.executor.free() > 0:
                    task = self.store.claim_next(self.id)
                    if task is None:
                        break
                    log.info("task %d start: %s %s %g (attempt %d)", task["id"], task["kind"], task["method"],
                             task["setting"], task["attempts"])
                    self.executor.submit(task)
                if self.executor.running():
                    idle_since = now
                elif self.idle_exit is not None and now - idle_since > self.idle_exit:
                    if self.store.unfinished() == 0:
                        break
                    idle_since = now
                if not self.executor.running():
                    time.sleep(0.25)
        finally:
            self.executor.shutdown()
            self.recover_own()
            log.info("runner %s stopped", self.id)
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def recover_own(self) -> None:
        """On the way out (the executor is shut down): tasks this runner still had are requeued for
        the next runner, their half-written folders removed."""
        own = [t["id"] for t in self.store.tasks(status="running") if t["runner_id"] == self.id]
        if own:
            self._drop_partials(own)
            n = self.store.requeue_interrupted(own)
            log.info("stopping: requeued %d interrupted task(s), no attempt spent: %s", n, own)

    def _drop_partials(self, task_ids: list[int]) -> None:
        """Remove the temporary output folders of tasks whose worker is gone (never read again)."""
        for task_id in task_ids:
            task = self.store.task(task_id)
            if task and not pid_alive(task["worker_pid"]):
                remove_stale_partials(Path(task["out_dir"]))

    def _settle(self, outcome) -> None:
        self._cancel_seen.pop(outcome.task_id, None)
        if outcome.status == "died":
            task = self.store.task(outcome.task_id)
            if task:  # the dead worker cannot clean up: drop its half-written folder now
                remove_stale_partials(Path(task["out_dir"]))
            if task and task["cancel_requested"]:
                self.store.mark_cancelled(outcome.task_id, "cancelled (worker stopped)")
                status = "cancelled"
            else:
                status = self.store.fail(outcome.task_id, outcome.reason, retry=True)
            log.info("task %d %s -> %s", outcome.task_id, outcome.reason, status)
        else:
            task = self.store.task(outcome.task_id)
            took = (task["finished_at"] or time.time()) - (task["started_at"] or time.time()) if task else 0.0
            log.info("task %d -> %s (%.1f s)", outcome.task_id, outcome.status, took)

    def _enforce_cancels(self) -> None:
        """A task that does not stop within the grace period after a cancel is killed."""
        now = time.monotonic()
        for task_id in self.executor.running():
            try:
                requested = self.store.cancel_requested(task_id)
            except sqlite3.OperationalError as exc:
                # a full disk or a busy database must not stop the runner over a cancel check: the
                # next round asks again (a fresh-clone run lost its runner here on a full disk)
                log.warning("cancel check of task %d skipped this round: %s", task_id, exc)
                continue
            if requested:
                first = self._cancel_seen.setdefault(task_id, now)
                if now - first > CANCEL_GRACE_S:
                    log.info("task %d ignored its cancel for %.0f s: killing its worker", task_id, CANCEL_GRACE_S)
                    self.executor.kill(task_id)


def ensure_runner(workspace: str | Path, *, workers: int | None = None, idle_exit: float = 120.0) -> bool:
    """Start a detached runner for ``workspace`` unless one is alive; returns True if it started one.

    The runner is its own session (``start_new_session``): it keeps running when the Streamlit
    server stops, and a page reload or a new server finds it through the lock file.
    """
    workspace = Path(workspace)
    if runner_alive(workspace):
        return False
    workspace.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dmic_core.jobs.worker", "--workspace", str(workspace),
           "--idle-exit", str(idle_exit)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(workspace / LOG_NAME, "ab") as logfile:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, cwd=package_root,
                                env=env, start_new_session=True, close_fds=True)
    # until it holds the lock, or has exited (another runner won the race); on a busy machine
    # starting Python alone can take seconds, so this waits for the state, up to a generous cap
    deadline = time.monotonic() + RUNNER_START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None and not runner_alive(workspace):
        time.sleep(0.05)
    return True


def stop_runner(workspace: str | Path, timeout: float = 10.0) -> bool:
    """Ask the workspace's runner to stop (SIGTERM to the pid in the lock file); True if it did."""
    path = Path(workspace) / LOCK_NAME
    if not runner_alive(workspace):
        return True
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not runner_alive(workspace):
            return True
        time.sleep(0.05)
    return False
