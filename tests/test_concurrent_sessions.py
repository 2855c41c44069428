"""Four app sessions each start a sweep on the Compress page at the same time (Streamlit AppTest).

All four share the app's one job store and one detached runner (``<root>/_jobs``). Checked:
nothing crashes (no page exception, no task failure, no traceback in the runner log), exactly one
runner serves the store, the concurrency limit (``DMIC_JOB_WORKERS``, here 2) is never exceeded,
and the sessions are served round-robin: while every session still has queued work, no session
gets a second task before each other session got its next one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.jobs import JobStore, runner_alive, stop_runner

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 4
WORKERS = 2
TIMEOUT = 60


def _session(root: Path, seed: int) -> str:
    """A session workspace with its own small phantom (and label) as the current volume."""
    ws_id = uuid.uuid4().hex
    volume, label = generate_phantom(seed, 16, size=128)
    image, label_path = write_imagecas_pair(volume, label, root / ws_id / "uploads" / "case", f"s{seed}")
    (root / ws_id / "current.json").write_text(json.dumps({"image": str(image), "label": str(label_path),
                                                          "name": f"phantom {seed}", "label_name": "label"}))
    return ws_id


def _start_sweep(ws_id: str, errors: list) -> None:
    """What a person does: open Compress, choose HEVC + linear at three QPs, gt scoring, start."""
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        at.query_params["ws"] = ws_id
        at.switch_page("pages/compress.py").run()
        at.multiselect(key="cmp_methods").set_value(["hevc", "linear"])
        at.multiselect(key="cmp_qps").set_value([22, 32, 37])
        at.selectbox(key="cmp_segmenter").set_value("gt")
        at.button[0].click().run()
        if at.exception:
            errors.append(at.exception)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _max_overlap(tasks: list[dict]) -> int:
    events = sorted([(t["started_at"], 1) for t in tasks] + [(t["finished_at"], -1) for t in tasks],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_four_sessions_share_the_runner_fairly(tmp_path, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(root))
    monkeypatch.setenv("DMIC_JOB_WORKERS", str(WORKERS))
    monkeypatch.chdir(ROOT)
    sessions = [_session(root, seed) for seed in range(1, SESSIONS + 1)]
    jobs_dir = root / "_jobs"
    errors: list = []
    threads = [threading.Thread(target=_start_sweep, args=(ws, errors)) for ws in sessions]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        store = JobStore(jobs_dir)
        jobs = store.jobs()
        assert sorted(j["owner"] for j in jobs) == sorted(sessions), "one job per session"
        deadline = time.monotonic() + 120
        while store.unfinished() and time.monotonic() < deadline:
            time.sleep(0.5)
        # a session reloading its page while others' jobs run sees its own job done
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        at.query_params["ws"] = sessions[0]
        at.switch_page("pages/compress.py").run()
        assert not at.exception and any("— done" in e.label for e in at.expander)
    finally:
        stop_runner(jobs_dir)
    tasks = store.tasks()
    assert len(tasks) == SESSIONS * 6
    assert all(t["status"] == "done" and t["attempts"] == 1 for t in tasks), \
        [(t["status"], t["error"]) for t in tasks if t["status"] != "done"]
    log = (jobs_dir / "runner.log").read_text()
    assert log.count(" started: executor=local") == 1 and "Traceback" not in log
    assert not runner_alive(jobs_dir)
    assert _max_overlap(tasks) <= WORKERS, "the concurrency limit must hold"
    owner = {j["id"]: j["owner"] for j in jobs}
    last_created = max(j["created_at"] for j in jobs)
    first_done = min(max(t["finished_at"] for t in tasks if t["job_id"] == j["id"]) for j in jobs)
    claims = [owner[t["job_id"]] for t in sorted(tasks, key=lambda t: t["started_at"])
              if last_created <= t["started_at"] < first_done]
    assert len(claims) >= SESSIONS, claims
    counts = dict.fromkeys(sessions, 0)
    for who in claims:  # round-robin: per-session claim counts never drift apart by more than one
        counts[who] += 1
        assert max(counts.values()) - min(counts.values()) <= 1, claims
