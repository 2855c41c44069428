"""The job store and runner with real encodes of small volumes (no mocks).

Covers: fair claiming, retry-once, failure reasons, cancel (queued and between frames), a worker
killed mid-encode, a runner killed mid-job and resumed, the detached runner, atomic outputs.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmic_core.jobs import JobStore, Runner, TaskSpec, ensure_runner, runner_alive, stop_runner
from dmic_core.jobs.store import pid_alive
from polling import join_all, scaled, wait_for


def _volume(path: Path, shape=(64, 64, 12), sigma=100.0, seed=0) -> str:
    data = np.random.default_rng(seed).normal(0, sigma, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 1.0, 1.0])), str(path))
    return str(path)


def _slow_volume(path: Path) -> str:
    """Noise at a low QP: a few seconds of encoding, long enough to interrupt."""
    return _volume(path, shape=(192, 192, 64), sigma=200.0)


def _encode(volume: str, out: Path, qp: int, **params) -> TaskSpec:
    return TaskSpec("encode", volume, "encode", qp, str(out / f"qp{qp}"), params or None)


def _run_until_idle(workspace: Path, timeout: float = 90.0, workers: int = 1) -> Runner:
    runner = Runner(workspace, workers=workers, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    join_all([thread], timeout=timeout, what="the runner to finish its queue and go idle")
    return runner


def test_store_schema_wal_and_unique_tasks(tmp_path):
    store = JobStore(tmp_path)
    specs = [_encode("a.nii", tmp_path, q) for q in (30, 34)]
    job = store.create_job("owner", specs, title="t")
    again = store.create_job("owner", specs + [_encode("a.nii", tmp_path, 38)], job_id=job)
    assert again == job
    assert [t["setting"] for t in store.tasks(job)] == [30.0, 34.0, 38.0]
    import sqlite3

    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert store.jobs("owner")[0]["status"] == "queued"
    assert store.jobs("someone else") == []


def test_claims_are_fair_between_owners(tmp_path):
    store = JobStore(tmp_path)
    a = store.create_job("alice", [_encode("a", tmp_path / "a", q) for q in (20, 21, 22)])
    b = store.create_job("bob", [_encode("b", tmp_path / "b", q) for q in (20, 21)])
    first = store.claim_next("r")
    second = store.claim_next("r")
    assert {first["job_id"], second["job_id"]} == {a, b}


def test_fail_retries_once_then_keeps_reason(tmp_path):
    store = JobStore(tmp_path)
    job = store.create_job("o", [_encode("a", tmp_path, 30)])
    t = store.claim_next("r")
    assert store.fail(t["id"], "boom 1") == "queued"
    t = store.claim_next("r")
    assert t["attempts"] == 2
    assert store.fail(t["id"], "boom 2") == "failed"
    (row,) = store.tasks(job)
    assert row["status"] == "failed" and row["error"] == "boom 2" and row["attempts"] == 2
    assert store.claim_next("r") is None
    assert store.retry_failed(job) == 1 and store.tasks(job)[0]["status"] == "queued"


def test_runner_encodes_and_writes_results_atomically(tmp_path):
    vol = _volume(tmp_path / "v.nii.gz")
    store = JobStore(tmp_path / "ws")
    out = tmp_path / "ws" / "out"
    job = store.create_job("o", [_encode(vol, out, q) for q in (26, 38)])
    _run_until_idle(tmp_path / "ws")
    tasks = store.tasks(job)
    assert [t["status"] for t in tasks] == ["done", "done"], [t["error"] for t in tasks]
    for t in tasks:
        folder = Path(t["out_dir"])
        assert Path(t["result_path"]) == folder / "result.json"
        assert {"stream.hevc", "recon.nii.gz", "result.json", "qp_map.npy"} <= {p.name for p in folder.iterdir()}
        assert t["summary"]["bits"] == 8 * (folder / "stream.hevc").stat().st_size
        assert t["progress_done"] == t["progress_total"] == 12
    assert tasks[0]["summary"]["bits"] > tasks[1]["summary"]["bits"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "partial folders left behind"
    progress = store.job_progress(job)
    assert progress["status"] == "done" and progress["fraction"] == 1.0 and progress["eta_seconds"] == 0.0


def test_bad_input_fails_without_retry_and_encoder_error_retries_once(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    vol = _volume(tmp_path / "v.nii.gz")
    store = JobStore(tmp_path / "ws")
    job = store.create_job("o", [
        _encode(str(bad), tmp_path / "ws" / "bad", 30),
        TaskSpec("encode", vol, "encode", 30, str(tmp_path / "ws" / "nocodec"), {"setup": {"codec": "nope"}}),
    ])
    _run_until_idle(tmp_path / "ws")
    bad_task, codec_task = store.tasks(job)
    assert bad_task["status"] == "failed" and bad_task["attempts"] == 1
    assert "broken.nii.gz" in bad_task["error"] and "Traceback" not in bad_task["error"]
    assert codec_task["status"] == "failed" and codec_task["attempts"] == 2
    assert "nope" in codec_task["error"]
    for folder in (tmp_path / "ws" / "bad", tmp_path / "ws" / "nocodec"):
        assert not folder.exists() or not list(folder.iterdir()), "nothing half-written may remain"
    assert store.job_progress(job)["status"] == "failed"


@pytest.mark.slow
def test_cancel_between_frames_and_queued(tmp_path):
    vol = _slow_volume(tmp_path / "slow.nii.gz")
    ws = tmp_path / "ws"
    store = JobStore(ws)
    job = store.create_job("o", [_encode(vol, ws / "out", q) for q in (14, 15)])
    runner = Runner(ws, workers=1, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    wait_for(lambda: any(t["progress_done"] > 0 for t in store.tasks(job)), what="progress")
    store.cancel_job(job)
    join_all([thread], timeout=60, what="the runner to stop after the cancel")
    statuses = [t["status"] for t in store.tasks(job)]
    assert statuses == ["cancelled", "cancelled"]
    first = store.tasks(job)[0]
    assert 0 < first["progress_done"] < 64, "cancel should stop the encode between frames"
    assert not (ws / "out").exists() or not any((ws / "out").iterdir())


@pytest.mark.slow
def test_killed_worker_fails_with_reason_and_is_retried(tmp_path):
    vol = _slow_volume(tmp_path / "slow.nii.gz")
    ws = tmp_path / "ws"
    store = JobStore(ws)
    job = store.create_job("o", [_encode(vol, ws / "out", 14)])
    runner = Runner(ws, workers=1, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    task = wait_for(lambda: next((t for t in store.tasks(job) if t["progress_done"] > 0 and t["worker_pid"]), None),
                    what="running encode")
    os.kill(task["worker_pid"], signal.SIGKILL)
    wait_for(lambda: store.tasks(job)[0]["error"], what="failure recorded")
    assert "killed (SIGKILL)" in store.tasks(job)[0]["error"]
    join_all([thread], timeout=90, what="the retried task and the runner to finish")
    (done,) = store.tasks(job)
    assert done["status"] == "done" and done["attempts"] == 2
    assert (Path(done["out_dir"]) / "result.json").is_file()


@pytest.mark.slow
def test_detached_runner_resumes_after_being_killed(tmp_path):
    vol = _volume(tmp_path / "v.nii.gz")
    slow = _slow_volume(tmp_path / "slow.nii.gz")
    ws = tmp_path / "ws"
    store = JobStore(ws)
    job = store.create_job("o", [_encode(vol, ws / "fast", 30), _encode(slow, ws / "slow", 14)])
    assert ensure_runner(ws, workers=1, idle_exit=2.0)
    assert not ensure_runner(ws), "a second runner must not start"
    pid = int((ws / "runner.lock").read_text().split()[0])
    assert os.getsid(pid) != os.getsid(0), "the runner must be detached from our session"
    fast, slow_task = wait_for(lambda: (lambda ts: ts if ts[0]["status"] == "done" and ts[1]["progress_done"] > 0
                                        else None)(store.tasks(job)), what="first task done, second running")
    fast_mtime = Path(fast["result_path"]).stat().st_mtime_ns
    worker_pid = slow_task["worker_pid"]
    os.kill(pid, signal.SIGKILL)  # the runner dies; its worker notices nothing until it finishes
    os.kill(worker_pid, signal.SIGKILL)  # ... and the machine "crashes" mid-encode
    wait_for(lambda: not runner_alive(ws) and not pid_alive(worker_pid), what="runner gone")
    assert store.tasks(job)[1]["status"] == "running"  # stale: nobody settled it
    assert ensure_runner(ws, workers=1, idle_exit=2.0)
    wait_for(lambda: store.tasks(job)[1]["status"] == "done", timeout=90, what="resumed task done")
    fast2, slow2 = store.tasks(job)
    assert fast2["status"] == "done" and Path(fast2["result_path"]).stat().st_mtime_ns == fast_mtime
    assert slow2["attempts"] == 1, "an interrupted run is not a failed attempt"
    assert stop_runner(ws, timeout=scaled(15))
    log = (ws / "runner.log").read_text()
    assert "requeued 1 interrupted task" in log
    assert "slow.nii.gz" not in log and str(tmp_path) not in log, "file names must not reach the log"
