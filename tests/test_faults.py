"""Faults during a batch, with real encodes: what is recorded, what is retried, what is left on disk.

* an encoder that refuses its input (x265 cannot open a picture smaller than one CTU): failed
  with the codec's reason after one retry, nothing written;
* a worker killed (SIGKILL) in the middle of an encode: failed with the reason, retried, done;
* a worker that crashes like a native segfault (SIGSEGV delivered to it) on both attempts:
  failed with the reason, its half-written folder removed;
* the batch process and its worker killed mid-encode (a machine crash), then the same command
  again: finished tasks are skipped (files untouched), the interrupted one is redone without
  spending an attempt;
* a full disk: the output folder on a real 2 MB tmpfs (mounted by the test; skipped where
  mounting is not permitted): tasks fail with "disk full" after one retry, no result or partial
  file remains, and after the filesystem grows ``--retry-failed`` completes the batch.
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
from dmic_core.jobs import JobStore
from polling import wait_for

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


def test_encoder_error_fails_with_reason_after_one_retry(small_case, tmp_path, capsys):
    image, label = small_case
    tiny = tmp_path / "tiny.nii.gz"  # valid NIfTI, but 16x16 pixels: smaller than one 64x64 CTU
    affine = np.diag([-0.5, -0.5, 1.0, 1.0])
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), -500, np.int16), affine), tiny)
    tiny_label = tmp_path / "tiny_label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.uint8), affine), tiny_label)
    csv = tmp_path / "set.csv"
    csv.write_text(f"image,label\n{image},{label}\n{tiny},{tiny_label}\n")
    out = tmp_path / "out"
    code = dmic_main(["batch", str(csv), "--out", str(out), "--methods", "hevc", "--qps", "27,37",
                      "--segmenter", "gt", "--workers", "1", "--no-progress"])
    assert code == 1
    tasks = pd.read_csv(out / "tasks.csv")
    good, bad = tasks[tasks.case_id == "1"], tasks[tasks.case_id == "tiny"]
    assert (good.status == "done").all() and (good.attempts == 1).all()
    assert (bad.status == "failed").all() and (bad.attempts == 2).all(), bad
    assert bad.error.str.contains("CodecError: x265").all(), bad.error.tolist()
    err = capsys.readouterr().err.splitlines()
    assert sum("tiny hevc" in line and "failed after 2 attempt(s): CodecError" in line for line in err) == 2
    assert not (out / "points" / "tiny").exists() or not any((out / "points" / "tiny").rglob("result.json"))
    assert not _leftovers(out)
    assert set(pd.read_csv(out / "points.csv").case_id.astype(str)) == {"1"}


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
    thread.join(120)
    assert not thread.is_alive()
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


@pytest.mark.slow
def test_batch_killed_mid_encode_resumes(slow_dataset, tmp_path):
    """SIGKILL the ``dmic batch`` process and its worker (a crash), then run the same command."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dmic_core.cli", "batch", str(slow_dataset), "--out", str(out), "--methods", "hevc",
           "--qps", "37,32,12", "--segmenter", "gt", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        store = wait_for(lambda: (out / "jobs.sqlite").exists() and JobStore(out), what="store")
        victim = wait_for(lambda: _running(store, 12.0, 1), timeout=90, what="QP 12 encoding")
        done_before = {t["setting"]: Path(t["result_path"]).stat().st_mtime_ns for t in store.tasks(status="done")}
        assert set(done_before) == {37.0, 32.0}
        proc.kill()
        os.kill(victim["worker_pid"], signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert store.task(victim["id"])["status"] == "running"  # stale: nobody settled it
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
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
