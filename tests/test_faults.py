"""Faults during a batch, with real encodes: what is recorded, what is retried, what is left on disk.

* an encoder that refuses a point's settings (x265 does not know the preset): failed with x265's
  reason after one retry, nothing written, the job's other points done;
* a worker killed (SIGKILL) in the middle of an encode: failed with the reason, retried, done;
* a worker that crashes like a native segfault (SIGSEGV delivered to it) on both attempts:
  failed with the reason, its half-written folder removed;
* the batch process and its worker killed mid-encode (a machine crash), then the same command
  again: finished tasks are skipped (files untouched), the interrupted one is redone without
  spending an attempt;
* a full disk: the output folder on a real 2 MB tmpfs (mounted by the test; skipped where
  mounting is not permitted): tasks fail with "disk full" after one retry, no result or partial
  file remains, and after the filesystem grows ``--retry-failed`` completes the batch;
* the detached job runner stopped with SIGTERM mid-encode (twice), then started again: the point is
  queued again without spending an attempt, with a message saying so, the killed worker's
  temporary folder is removed, and the restarted runner finishes it; ``dmic batch`` stopped with
  SIGTERM exits 130 and the same command finishes the batch;
* a corrupt agents checkpoint (truncated, garbage, empty): a one-line error naming the file from
  the loader and the CLI (exit 2); in a job the point fails at once, not retried.

``docs/faults.md`` tabulates these with the cases tried and the results lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmic_core.batch import BatchConfig, run_batch
from dmic_core.cli import main as dmic_main
from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.errors import DmicInputError
from dmic_core.jobs import JobStore, Runner, TaskSpec, ensure_runner, runner_alive, stop_runner
from dmic_core.jobs.store import INTERRUPTED, pid_alive
from polling import join_all, scaled, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory) -> Path:
    """One 256x256x24 phantom: about 2 s per low-QP point, long enough to interrupt."""
    root = tmp_path_factory.mktemp("slow")
    volume, label = generate_phantom(3, 24, size=256)
    write_imagecas_pair(volume, label, root, "3")
    return root


@pytest.fixture(scope="module")
def small_case(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("small")
    volume, label = generate_phantom(1, 16, size=128)
    return write_imagecas_pair(volume, label, root, "1")


def _leftovers(folder: Path) -> list[Path]:
    """Anything half-written: temporary folders/files of an attempt."""
    return [p for p in folder.rglob("*") if ".partial-" in p.name or ".old-" in p.name or p.name.endswith(".tmp")]


def _running(store: JobStore, setting: float, attempt: int):
    """The task at ``setting`` while it encodes (progress recorded) in attempt ``attempt``."""
    for t in store.tasks(status="running"):
        if t["setting"] == setting and t["attempts"] == attempt and t["progress_done"] > 0 and t["worker_pid"]:
            return t
    return None


def test_encoder_error_fails_with_reason_after_one_retry(small_case, tmp_path):
    """x265 refuses a point's settings (a preset it does not know): that point fails with x265's
    reason after one retry and writes nothing; the job's other points are done.

    (Pictures smaller than one CTU used to be the refused input; the x265 backend now pads them.)
    """
    image, label = small_case
    ws = tmp_path / "ws"
    params = {"label": str(label), "segmenter": "gt"}
    store = JobStore(ws)
    job = store.create_job("o", [
        TaskSpec("point", str(image), "hevc", 27, str(ws / "out" / "good27"), params),
        TaskSpec("point", str(image), "hevc", 37, str(ws / "out" / "bad37"),
                 {**params, "setup": {"codec": "x265", "preset": "no-such-preset"}}),
        TaskSpec("point", str(image), "hevc", 32, str(ws / "out" / "good32"), params),
    ])
    runner = Runner(ws, workers=1, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    join_all([thread], timeout=120, what="the job to finish")
    good27, bad, good32 = store.tasks(job)
    assert [(t["status"], t["attempts"]) for t in (good27, good32)] == [("done", 1), ("done", 1)]
    assert bad["status"] == "failed" and bad["attempts"] == 2, bad
    assert bad["error"] == "ValueError: unknown x265 preset 'no-such-preset'", bad["error"]
    assert not Path(bad["out_dir"]).exists() and not _leftovers(ws / "out")
    assert store.job_progress(job)["status"] == "partial"


@pytest.mark.slow
def test_killed_and_crashing_workers(slow_dataset, tmp_path):
    out = tmp_path / "out"
    config = BatchConfig(methods=("hevc",), qps=(12.0, 13.0), segmenter="gt")
    store = JobStore(out)
    results = {}
    thread = threading.Thread(target=lambda: results.update(r=run_batch(slow_dataset, out, config, workers=1,
                                                                        progress=False)), daemon=True)
    thread.start()
    # QP 12 first attempt: SIGKILL mid-encode -> recorded, retried, done on attempt 2
    victim = wait_for(lambda: _running(store, 12.0, 1), what="QP 12 encoding")
    os.kill(victim["worker_pid"], signal.SIGKILL)
    wait_for(lambda: "SIGKILL" in (store.task(victim["id"])["error"] or ""), what="SIGKILL recorded")
    # QP 13: a crash (SIGSEGV) on both attempts -> failed for good with the reason
    crash = wait_for(lambda: _running(store, 13.0, 1), what="QP 13 attempt 1")
    os.kill(crash["worker_pid"], signal.SIGSEGV)
    wait_for(lambda: "SIGSEGV" in (store.task(crash["id"])["error"] or ""), what="crash recorded")
    crash = wait_for(lambda: _running(store, 13.0, 2), what="QP 13 attempt 2")  # requeued and claimed again
    os.kill(crash["worker_pid"], signal.SIGSEGV)
    join_all([thread], timeout=120, what="the batch to finish")
    killed, crashed = store.tasks("batch")
    assert killed["status"] == "done" and killed["attempts"] == 2 and killed["error"] is None
    assert json.loads(Path(killed["result_path"]).read_text())["bits"] == killed["summary"]["bits"]
    assert crashed["status"] == "failed" and crashed["attempts"] == 2
    assert crashed["error"] == "worker process was killed (SIGSEGV)"
    assert not Path(crashed["out_dir"]).exists()
    assert not _leftovers(out), "a dead worker's half-written folder must be removed"
    points = pd.read_csv(out / "points.csv")
    assert points.setting.tolist() == [12.0], "only finished tasks reach the tables"
    assert results["r"].failures[0]["error"] == "worker process was killed (SIGSEGV)"


def _alive(proc: subprocess.Popen, pred):
    """``pred`` for :func:`wait_for`, failing at once (with the process's stderr) if ``proc`` has
    exited: a ``dmic batch`` that died early is reported, not waited on until the deadline."""
    def check():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            err = err.decode(errors="replace") if isinstance(err, bytes) else err
            raise AssertionError(f"dmic batch exited with {proc.returncode} too early: {err[-2000:]}")
        return pred()
    return check


@pytest.mark.slow
def test_batch_killed_mid_encode_resumes(slow_dataset, tmp_path):
    """SIGKILL the ``dmic batch`` process and its worker (a crash), then run the same command."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dmic_core.cli", "batch", str(slow_dataset), "--out", str(out), "--methods", "hevc",
           "--qps", "37,32,12", "--segmenter", "gt", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        store = wait_for(_alive(proc, lambda: (out / "jobs.sqlite").exists() and JobStore(out)), what="store")
        victim = wait_for(_alive(proc, lambda: _running(store, 12.0, 1)), timeout=90, what="QP 12 encoding")
        done_before = {t["setting"]: Path(t["result_path"]).stat().st_mtime_ns for t in store.tasks(status="done")}
        assert set(done_before) == {37.0, 32.0}
        proc.kill()
        os.kill(victim["worker_pid"], signal.SIGKILL)
        proc.wait(scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert store.task(victim["id"])["status"] == "running"  # stale: nobody settled it
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=scaled(120))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["tasks_run"] == 1
    tasks = {t["setting"]: t for t in store.tasks("batch")}
    assert all(t["status"] == "done" for t in tasks.values())
    assert tasks[12.0]["attempts"] == 1, "an interrupted run is not a failed attempt"
    assert {s: Path(tasks[s]["result_path"]).stat().st_mtime_ns for s in done_before} == done_before
    assert len(pd.read_csv(out / "points.csv")) == 3
    assert not _leftovers(out)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MB tmpfs (root only); yields its path and a function that grows it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or proc.returncode})")

    def grow(size: str = "64m") -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    try:
        yield mount, grow
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_full_disk_fails_cleanly_then_retry_completes(slow_dataset, tiny_disk):
    disk, grow = tiny_disk
    out = disk / "batch"
    config = BatchConfig(methods=("hevc",), qps=(12.0,), segmenter="gt")
    first = run_batch(slow_dataset, out, config, workers=1, progress=False)
    (failure,) = first.failures
    assert failure["attempts"] == 2 and failure["error"].startswith("disk full: "), failure
    assert "No space left on device" in failure["error"]
    assert not list(out.rglob("result.json")) and not _leftovers(out)
    assert not (out / "points" / "3").exists() or not any((out / "points" / "3").iterdir())
    assert pd.read_csv(out / "tasks.csv").status.tolist() == ["failed"]
    grow()
    second = run_batch(slow_dataset, out, config, workers=1, progress=False, retry_failed=True)
    assert second.complete and second.counts["done"] == 1 and not second.failures
    assert len(list(out.rglob("result.json"))) == 1 and not _leftovers(out)


# --- the job runner stopped with SIGTERM mid-encode, then started again ------------------------

@pytest.fixture(scope="module")
def noise_volumes(tmp_path_factory) -> tuple[str, str]:
    """A quick volume and a slow one (192x192x64 noise: seconds of encoding at QP 14)."""
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    paths = []
    for name, shape in (("quick", (64, 64, 12)), ("slow", (192, 192, 64))):
        data = rng.normal(0, 200, shape).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.7, 1.0, 1.0])), str(root / f"{name}.nii.gz"))
        paths.append(str(root / f"{name}.nii.gz"))
    return paths[0], paths[1]


def _mid_encode(store: JobStore, task_id: int, attempt: int):
    """The task while its worker is in the first half of its frames, in attempt ``attempt``."""
    t = store.task(task_id)
    if t["status"] == "running" and t["attempts"] == attempt and t["worker_pid"] and \
            0 < t["progress_done"] <= t["progress_total"] // 2:
        return t
    return None


@pytest.mark.slow
def test_runner_stopped_with_sigterm_mid_encode_resumes_cleanly(noise_volumes, tmp_path):
    """SIGTERM to the detached runner (what ``systemctl stop``, a container stop or a server
    shutdown sends) twice in the middle of the same encode; each time it is started again."""
    quick, slow = noise_volumes
    ws = tmp_path / "ws"
    store = JobStore(ws)
    job = store.create_job("o", [TaskSpec("encode", quick, "encode", 37, str(ws / "out" / "quick")),
                                 TaskSpec("encode", slow, "encode", 14, str(ws / "out" / "slow"))])
    quick_id, slow_id = (t["id"] for t in store.tasks(job))
    try:
        for round_ in (1, 2):
            assert ensure_runner(ws, workers=1, idle_exit=2.0)
            victim = wait_for(lambda: _mid_encode(store, slow_id, 1), timeout=90,
                              what="the slow task mid-encode")
            if round_ == 1:
                quick_task = store.task(quick_id)
                assert quick_task["status"] == "done"
                quick_mtime = Path(quick_task["result_path"]).stat().st_mtime_ns
            assert stop_runner(ws, timeout=scaled(15)), "the runner must stop on SIGTERM"
            assert not runner_alive(ws) and not pid_alive(victim["worker_pid"])
            waiting = store.task(slow_id)
            assert waiting["status"] == "queued" and waiting["attempts"] == 0, "interrupted, not failed"
            assert waiting["error"] == INTERRUPTED  # what the app shows next to the queued point
            assert not (ws / "out" / "slow").exists(), "no half-written result"
            assert not _leftovers(ws / "out"), "the killed worker's temporary folder is removed"
        assert ensure_runner(ws, workers=1, idle_exit=2.0)
        wait_for(lambda: store.task(slow_id)["status"] == "done", timeout=120,
                 what="the resumed task to finish")
    finally:
        stop_runner(ws, timeout=scaled(15))
    done = store.task(slow_id)
    assert done["attempts"] == 1 and done["error"] is None
    result = json.loads(Path(done["result_path"]).read_text())
    stream = Path(done["out_dir"]) / "stream.hevc"
    assert result["bits"] == done["summary"]["bits"] == 8 * stream.stat().st_size
    quick_result = Path(store.task(quick_id)["result_path"])
    assert quick_result.stat().st_mtime_ns == quick_mtime, "finished work untouched"
    assert not _leftovers(ws / "out")
    log = (ws / "runner.log").read_text()
    assert log.count("stopping: requeued 1 interrupted task(s), no attempt spent") == 2, log
    assert "Traceback" not in log


@pytest.mark.slow
def test_batch_stopped_with_sigterm_resumes(slow_dataset, tmp_path):
    """SIGTERM to ``dmic batch`` mid-encode: it stops by itself (exit 130, "run the same command
    again"), the interrupted point is queued again; the same command then finishes the batch."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dmic_core.cli", "batch", str(slow_dataset), "--out", str(out),
           "--methods", "hevc", "--qps", "37,12", "--segmenter", "gt", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = wait_for(_alive(proc, lambda: (out / "jobs.sqlite").exists() and JobStore(out)), what="store")
        victim = wait_for(_alive(proc, lambda: _running(store, 12.0, 1)), timeout=90, what="QP 12 encoding")
        done_before = {t["setting"]: Path(t["result_path"]).stat().st_mtime_ns
                       for t in store.tasks(status="done")}
        assert set(done_before) == {37.0}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; run the same command again to resume" in err, err
    assert not pid_alive(victim["worker_pid"])
    waiting = store.task(victim["id"])
    assert waiting["status"] == "queued" and waiting["attempts"] == 0 and waiting["error"] == INTERRUPTED
    assert not Path(waiting["out_dir"]).exists() and not _leftovers(out)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=scaled(120))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["tasks_run"] == 1
    tasks = {t["setting"]: t for t in store.tasks("batch")}
    assert all(t["status"] == "done" and t["attempts"] == 1 for t in tasks.values())
    assert Path(tasks[37.0]["result_path"]).stat().st_mtime_ns == done_before[37.0]
    assert len(pd.read_csv(out / "points.csv")) == 2 and not _leftovers(out)


# --- a corrupt agents checkpoint --------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> list[Path]:
    """The shipped agents cut in half, random bytes, an empty file."""
    folder = tmp_path_factory.mktemp("ckpt")
    good = (ROOT / "assets" / "agents_dmic.pt").read_bytes()
    files = {"truncated.pt": good[: len(good) // 2], "garbage.pt": np.random.default_rng(5).bytes(4096),
             "empty.pt": b""}
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    return [folder / name for name in files]


def test_corrupt_agents_checkpoint_is_refused_naming_the_file(bad_checkpoints, small_case, tmp_path, capsys):
    from dmic_core.agents.inference import load_agents

    for bad in bad_checkpoints:
        with pytest.raises(DmicInputError) as info:
            load_agents(bad)
        text = str(info.value)
        assert text.startswith(f"{bad.name}: not a readable agents checkpoint, truncated or corrupt (") \
            and "\n" not in text and len(text) < 250, text
    # the CLI: exit status 2 and the one line, no result
    image, label = small_case
    code = dmic_main(["compress", str(image), "--label", str(label), "--segmenter", "gt", "--method", "dmic",
                      "--lambda", "10", "--agents", str(bad_checkpoints[0]), "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "truncated.pt: not a readable agents checkpoint" in err[0], err
    assert not any((tmp_path / "cli").rglob("result.json"))


def test_corrupt_agents_checkpoint_fails_its_job_tasks_once(bad_checkpoints, small_case, tmp_path):
    """A job with a DMIC point per bad checkpoint and an HEVC point: each bad point fails at once
    (a retry cannot fix a file) naming its checkpoint; the HEVC point is done."""
    image, label = small_case
    ws = tmp_path / "ws"
    params = {"label": str(label), "segmenter": "gt"}
    specs = [TaskSpec("point", str(image), "hevc", 32, str(ws / "out" / "hevc"), params)]
    specs += [TaskSpec("point", str(image), "dmic", 10.0 + i, str(ws / "out" / bad.stem),
                       {**params, "options": {"agents": str(bad)}}) for i, bad in enumerate(bad_checkpoints)]
    store = JobStore(ws)
    job = store.create_job("o", specs)
    runner = Runner(ws, workers=1, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    join_all([thread], timeout=120, what="the job to finish")
    hevc, *bad_tasks = store.tasks(job)
    assert hevc["status"] == "done" and (Path(hevc["out_dir"]) / "result.json").is_file()
    for task, bad in zip(bad_tasks, bad_checkpoints):
        assert task["status"] == "failed" and task["attempts"] == 1, task
        assert task["error"].startswith(f"{bad.name}: not a readable agents checkpoint"), task["error"]
        assert not Path(task["out_dir"]).exists()
    assert not _leftovers(ws / "out")
