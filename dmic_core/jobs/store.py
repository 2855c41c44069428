"""The persistent job store: one SQLite file (WAL) with a ``jobs`` and a ``tasks`` table.

A *job* is what a person starts (a sweep of one volume, a dataset batch); a *task* is one
``(volume, method, setting)`` point of it and one row of ``tasks``. Everything that must survive a
page reload, a Streamlit restart or a killed runner lives here: status, attempts, the failure
reason, progress, the path of the finished ``result.json`` and a copy of its headline numbers.

Several processes use the file at once (the app's script threads read, the runner claims and
settles, worker processes write progress), so every write is a short transaction, claims use
``BEGIN IMMEDIATE`` and each connection waits on a busy database instead of failing. Timestamps
(``created_at``, ``started_at``, ``finished_at``) are taken inside the write transaction, under its
lock, so they order exactly like the transactions: the store's records show the order in which
tasks were admitted and settled, whatever the load (the fairness tests read it from there).

Task life cycle::

    queued -> running -> done
                      -> failed      (reason kept; requeued once if it may succeed on a retry)
                      -> cancelled   (cancel flag seen between frames, or cancelled while queued)
    running --(runner gone, worker gone)--> queued   (interruptions are not failures)
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

SCHEMA_VERSION = 1
DB_NAME = "jobs.sqlite"

#: Every status a task can have; a job's status is derived from its tasks'.
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

#: Attempts a task gets by default: the first run plus one retry.
DEFAULT_MAX_ATTEMPTS = 2

#: What a task that was running when its runner or worker stopped says while it waits again.
INTERRUPTED = "interrupted: the job runner stopped before this point finished; queued to run again"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    volume TEXT NOT NULL,
    method TEXT NOT NULL,
    setting REAL NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    out_dir TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 2,
    error TEXT,
    result_path TEXT,
    summary TEXT,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER,
    runner_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    UNIQUE (job_id, volume, method, setting)
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, job_id, seq);
"""


@dataclass(frozen=True)
class TaskSpec:
    """One task to add to a job: a point ``(volume, method, setting)`` and how to run it.

    Attributes:
        kind: name of the task function in :data:`dmic_core.jobs.tasks.TASK_KINDS`.
        volume: path (or dataset id) of the input volume, part of the task's identity.
        method / setting: the rate point (see :class:`dmic_core.methods.PointSpec`).
        params: anything else the task function needs (label path, codec, bit depth, ...).
        out_dir: where the finished outputs go (written under a temporary name, then renamed).
    """

    kind: str
    volume: str
    method: str
    setting: float
    out_dir: str
    params: dict[str, Any] | None = None


def _now() -> float:
    return time.time()


class JobStore:
    """Jobs and tasks of one workspace folder (``<workspace>/jobs.sqlite``).

    Connections are opened per call so a store object can be shared by Streamlit threads and
    passed (as its path) to worker processes.
    """

    def __init__(self, workspace: str | Path, *, timeout: float = 30.0) -> None:
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / DB_NAME
        self.timeout = timeout
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- jobs -----------------------------------------------------------------------------------
    def create_job(self, owner: str, tasks: Sequence[TaskSpec], *, title: str = "",
                   params: dict[str, Any] | None = None, job_id: str | None = None,
                   max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> str:
        """Add a job and its tasks; returns the job id.

        With an existing ``job_id`` only tasks it does not have yet are added (a restarted batch
        re-submits its whole list and finished tasks are kept, not redone).
        """
        job_id = job_id or uuid.uuid4().hex[:16]
        with self._transaction() as con:
            now = _now()
            con.execute("INSERT OR IGNORE INTO jobs (id, owner, title, params, created_at) VALUES (?,?,?,?,?)",
                        (job_id, owner, title, json.dumps(params or {}), now))
            start = con.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM tasks WHERE job_id=?",
                                (job_id,)).fetchone()[0]
            for i, t in enumerate(tasks):
                con.execute(
                    "INSERT OR IGNORE INTO tasks (job_id, seq, kind, volume, method, setting, params, out_dir,"
                    " max_attempts, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (job_id, start + i, t.kind, t.volume, t.method, float(t.setting),
                     json.dumps(t.params or {}), t.out_dir, max_attempts, now, now))
        return job_id

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _job_dict(row)

    def jobs(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Jobs (newest first), each with its task counts and derived ``status``."""
        sql = "SELECT * FROM jobs" + (" WHERE owner=?" if owner is not None else "") + " ORDER BY created_at DESC"
        with self._connect() as con:
            rows = con.execute(sql, () if owner is None else (owner,)).fetchall()
            counts: dict[str, dict[str, int]] = {}
            for r in con.execute("SELECT job_id, status, COUNT(*) AS n FROM tasks GROUP BY job_id, status"):
                counts.setdefault(r["job_id"], {})[r["status"]] = r["n"]
        out = []
        for row in rows:
            job = _job_dict(row)
            job["counts"] = {s: counts.get(job["id"], {}).get(s, 0) for s in STATUSES}
            job["status"] = job_status(job["counts"])
            out.append(job)
        return out

    def cancel_job(self, job_id: str) -> None:
        """Queued tasks become cancelled now; running ones see the flag at their next frame."""
        with self._transaction() as con:
            now = _now()
            con.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            con.execute("UPDATE tasks SET status='cancelled', error='cancelled before it started', finished_at=?,"
                        " updated_at=? WHERE job_id=? AND status='queued'", (now, now, job_id))
            con.execute("UPDATE tasks SET cancel_requested=1, updated_at=? WHERE job_id=? AND status='running'",
                        (now, job_id))

    def retry_failed(self, job_id: str) -> int:
        """Requeue the failed and cancelled tasks of a job (a fresh pair of attempts each)."""
        with self._transaction() as con:
            now = _now()
            con.execute("UPDATE jobs SET cancel_requested=0 WHERE id=?", (job_id,))
            cur = con.execute(
                "UPDATE tasks SET status='queued', attempts=0, error=NULL, cancel_requested=0, progress_done=0,"
                " started_at=NULL, finished_at=NULL, updated_at=? WHERE job_id=? AND status IN ('failed','cancelled')",
                (now, job_id))
            return cur.rowcount

    def delete_job(self, job_id: str) -> None:
        """Forget a finished job (its files are the caller's to remove)."""
        with self._transaction() as con:
            busy = con.execute("SELECT COUNT(*) FROM tasks WHERE job_id=? AND status IN ('queued','running')",
                               (job_id,)).fetchone()[0]
            if busy:
                raise ValueError("cancel the job before deleting it")
            con.execute("DELETE FROM tasks WHERE job_id=?", (job_id,))
            con.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    # -- tasks ----------------------------------------------------------------------------------
    def tasks(self, job_id: str | None = None, status: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if job_id is not None:
            where.append("job_id=?")
            args.append(job_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = "SELECT * FROM tasks" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY job_id, seq"
        with self._connect() as con:
            return [_task_dict(r) for r in con.execute(sql, args)]

    def task(self, task_id: int) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
        return None if row is None else _task_dict(row)

    def claim_next(self, runner_id: str, worker_pid: int | None = None) -> dict[str, Any] | None:
        """Atomically take the next queued task and mark it running (one more attempt).

        Fair between owners and jobs: the task comes from the owner with the fewest running tasks,
        among those the one served longest ago (never served first), then the job with the fewest
        running tasks, oldest first. So concurrent sessions share the workers round-robin, even
        with a single worker, instead of queueing behind the first session's whole sweep.
        """
        with self._transaction() as con:
            now = _now()
            row = con.execute(
                """WITH per_job AS (
                       SELECT job_id, SUM(status='running') AS running, MAX(started_at) AS last_start
                       FROM tasks GROUP BY job_id),
                   per_owner AS (
                       SELECT j.owner, SUM(p.running) AS running, MAX(p.last_start) AS last_start
                       FROM per_job p JOIN jobs j ON j.id = p.job_id GROUP BY j.owner)
                   SELECT t.id FROM tasks t JOIN jobs j ON j.id = t.job_id
                        JOIN per_owner o ON o.owner = j.owner JOIN per_job p ON p.job_id = t.job_id
                   WHERE t.status='queued' AND j.cancel_requested=0
                   ORDER BY o.running, COALESCE(o.last_start, 0), p.running, j.created_at, t.seq
                   LIMIT 1""").fetchone()
            if row is None:
                return None
            con.execute("UPDATE tasks SET status='running', attempts=attempts+1, started_at=?, updated_at=?,"
                        " finished_at=NULL, runner_id=?, worker_pid=?, progress_done=0, cancel_requested=0"
                        " WHERE id=?", (now, now, runner_id, worker_pid, row["id"]))
            task = con.execute("SELECT * FROM tasks WHERE id=?", (row["id"],)).fetchone()
        return _task_dict(task)

    def set_worker(self, task_id: int, pid: int) -> None:
        with self._transaction() as con:
            con.execute("UPDATE tasks SET worker_pid=?, updated_at=? WHERE id=?", (pid, _now(), task_id))

    def report_progress(self, task_id: int, done: int, total: int) -> bool:
        """Record progress; returns whether the task (or its job) was asked to cancel."""
        with self._transaction() as con:
            con.execute("UPDATE tasks SET progress_done=?, progress_total=?, updated_at=? WHERE id=?",
                        (int(done), int(total), _now(), task_id))
            row = con.execute("SELECT t.cancel_requested OR j.cancel_requested FROM tasks t JOIN jobs j"
                              " ON j.id=t.job_id WHERE t.id=?", (task_id,)).fetchone()
        return bool(row and row[0])

    def cancel_requested(self, task_id: int) -> bool:
        with self._connect() as con:
            row = con.execute("SELECT t.cancel_requested OR j.cancel_requested FROM tasks t JOIN jobs j"
                              " ON j.id=t.job_id WHERE t.id=?", (task_id,)).fetchone()
        return bool(row and row[0])

    def finish(self, task_id: int, result_path: str | Path, summary: dict[str, Any] | None = None) -> None:
        with self._transaction() as con:
            now = _now()
            con.execute("UPDATE tasks SET status='done', result_path=?, summary=?, error=NULL, finished_at=?,"
                        " updated_at=?, progress_done=MAX(progress_done, progress_total) WHERE id=? AND status='running'",
                        (str(result_path), json.dumps(summary or {}), now, now, task_id))

    def fail(self, task_id: int, reason: str, *, retry: bool = True) -> str:
        """Mark a running task failed with ``reason``; requeue it when it has attempts left.

        Returns the new status (``queued`` when it will be retried, else ``failed``).
        """
        reason = " ".join(str(reason).split())[:500] or "failed"
        with self._transaction() as con:
            now = _now()
            row = con.execute("SELECT attempts, max_attempts, status FROM tasks WHERE id=?", (task_id,)).fetchone()
            if row is None or row["status"] != "running":
                return "" if row is None else row["status"]
            again = retry and row["attempts"] < row["max_attempts"]
            status = "queued" if again else "failed"
            con.execute("UPDATE tasks SET status=?, error=?, finished_at=?, updated_at=?, worker_pid=NULL WHERE id=?",
                        (status, reason, None if again else now, now, task_id))
        return status

    def mark_cancelled(self, task_id: int, reason: str = "cancelled") -> None:
        with self._transaction() as con:
            now = _now()
            con.execute("UPDATE tasks SET status='cancelled', error=?, finished_at=?, updated_at=?, worker_pid=NULL"
                        " WHERE id=? AND status IN ('queued','running')", (reason, now, now, task_id))

    def requeue_interrupted(self, task_ids: Iterable[int], reason: str = INTERRUPTED) -> int:
        """Put running tasks whose worker is gone back in the queue without spending an attempt.

        ``reason`` goes in the ``error`` column while the task waits (the app shows it next to the
        queued task); the next attempt's outcome replaces it.
        """
        n = 0
        with self._transaction() as con:
            now = _now()
            for task_id in task_ids:
                cur = con.execute(
                    "UPDATE tasks SET status=CASE WHEN cancel_requested=1 THEN 'cancelled' ELSE 'queued' END,"
                    " attempts=MAX(attempts-1, 0), worker_pid=NULL, runner_id=NULL, updated_at=?,"
                    " error=CASE WHEN cancel_requested=1 THEN 'cancelled' ELSE ? END"
                    " WHERE id=? AND status='running'", (now, reason, task_id))
                n += cur.rowcount
        return n

    # -- views ----------------------------------------------------------------------------------
    def job_progress(self, job_id: str, workers: int = 1) -> dict[str, Any]:
        """Counts, overall fraction and an ETA (seconds) for a job.

        The ETA spreads the remaining work over ``workers``: running tasks finish at their current
        frame rate, queued ones take the mean duration of the job's finished tasks (or the
        running tasks' projected duration while none has finished).
        """
        tasks = self.tasks(job_id)
        now = _now()
        counts = {s: sum(t["status"] == s for t in tasks) for s in STATUSES}
        durations = [t["finished_at"] - t["started_at"] for t in tasks
                     if t["status"] == "done" and t["started_at"] and t["finished_at"]]
        remaining_running, projected = 0.0, []
        fraction_done = float(counts["done"] + counts["failed"] + counts["cancelled"])
        for t in tasks:
            if t["status"] != "running":
                continue
            frac = t["progress_done"] / t["progress_total"] if t["progress_total"] else 0.0
            fraction_done += frac
            elapsed = now - (t["started_at"] or now)
            if frac > 0.02:
                total = elapsed / frac
                projected.append(total)
                remaining_running += max(total - elapsed, 0.0)
        per_task = (sum(durations) / len(durations)) if durations else (
            sum(projected) / len(projected) if projected else None)
        eta = None
        if counts["queued"] == 0 and counts["running"] == 0:
            eta = 0.0
        elif per_task is not None:
            eta = (remaining_running + counts["queued"] * per_task) / max(1, workers)
        return {"counts": counts, "total": len(tasks), "status": job_status(counts),
                "fraction": fraction_done / len(tasks) if tasks else 1.0, "eta_seconds": eta}

    def unfinished(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM tasks WHERE status IN ('queued','running')").fetchone()[0]


def job_status(counts: dict[str, int]) -> str:
    """A job's status from its task counts."""
    if counts.get("running"):
        return "running"
    if counts.get("queued"):
        return "queued"
    if counts.get("failed"):
        return "failed" if not counts.get("done") else "partial"
    if counts.get("cancelled"):
        return "cancelled"
    return "done"


def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["params"] = json.loads(d["params"] or "{}")
    d["cancel_requested"] = bool(d["cancel_requested"])
    return d


def _task_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["params"] = json.loads(d["params"] or "{}")
    d["summary"] = json.loads(d["summary"]) if d.get("summary") else None
    d["cancel_requested"] = bool(d["cancel_requested"])
    return d


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (and is not a zombie) on this machine."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
