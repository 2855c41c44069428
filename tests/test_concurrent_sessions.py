"""Four app sessions each start a sweep on the Compress page at the same time (Streamlit AppTest).

All four share the app's one job store and one detached runner (``<root>/_jobs``). Checked:
nothing crashes (no page exception, no task failure, no traceback in the runner log), exactly one
runner serves the store, the concurrency limit (``DMIC_JOB_WORKERS``, here 2) is never exceeded,
and the sessions are served fairly: the store's records (when each job was created, when each task
was claimed and finished) show that every claim went to a session with the fewest running tasks
and, among those, the one served longest ago, i.e. round-robin.

Each session is its own process. AppTest is not thread-safe: every run installs and afterwards
clears a process-global ``Runtime`` instance, patches the global config and compiles the page in
its own script cache, so AppTests run in threads of one process break each other's runs (a page
fails with "Runtime hasn't been created!" or, on Python 3.11, with "AST constructor recursion
depth mismatch" from concurrent ``ast.parse``). The Streamlit server has one runtime and one
locked script cache for all sessions, so this is a test-harness fault, not the app's; sessions in
separate processes still start their jobs at the same time against the same store and runner.

Waits are on states (every session's page has run, every task has finished), with deadlines
scaled by ``$DMIC_TEST_SLOWDOWN`` (see ``tests/polling.py``), never on the clock.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.jobs import JobStore, runner_alive, stop_runner
from polling import scaled, wait_for

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 4
WORKERS = 2


def _session(root: Path, seed: int) -> str:
    """A session workspace with its own small phantom (and label) as the current volume."""
    ws_id = uuid.uuid4().hex
    volume, label = generate_phantom(seed, 16, size=128)
    image, label_path = write_imagecas_pair(volume, label, root / ws_id / "uploads" / "case", f"s{seed}")
    (root / ws_id / "current.json").write_text(json.dumps({"image": str(image), "label": str(label_path),
                                                          "name": f"phantom {seed}", "label_name": "label"}))
    return ws_id


def _start_sweep(ws_id: str) -> list[str]:
    """What a person does (in a session process): open Compress, choose HEVC + linear at three QPs,
    gt scoring, start. Returns the page's exceptions, in full."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=scaled(60))
    at.query_params["ws"] = ws_id
    at.switch_page("pages/compress.py").run()
    errors = [f"opening Compress: {e.message}\n{''.join(e.stack_trace)}" for e in at.exception]
    if errors:
        return errors
    at.multiselect(key="cmp_methods").set_value(["hevc", "linear"])
    at.multiselect(key="cmp_qps").set_value([22, 32, 37])
    at.selectbox(key="cmp_segmenter").set_value("gt")
    at.button(key="FormSubmitter:cmp_form-Start job").click().run()
    return [f"starting the job: {e.message}\n{''.join(e.stack_trace)}" for e in at.exception]


def _running_at(tasks: list[dict], t: float) -> int:
    return sum(1 for x in tasks if x["started_at"] < t < x["finished_at"])


def _unfair_claims(jobs: list[dict], tasks: list[dict]) -> tuple[list[str], int]:
    """Claims that broke the admission rule, replayed from the store's records, and how many
    claims had a choice (more than one session waiting).

    At each claim (a task's ``started_at``; every task ran once) the sessions with queued work are
    those whose job existed and still had an unclaimed task. The claimed session must have had no
    more running tasks than any of them, and with as many, must have been served no later (never
    served counts as served first).
    """
    owner = {j["id"]: j["owner"] for j in jobs}
    created = {j["owner"]: j["created_at"] for j in jobs}
    by_owner: dict[str, list[dict]] = {}
    for t in tasks:
        by_owner.setdefault(owner[t["job_id"]], []).append(t)
    bad, contested = [], 0
    for claim in sorted(tasks, key=lambda t: t["started_at"]):
        t = claim["started_at"]

        def key(who: str) -> tuple[int, float]:
            mine = by_owner[who]
            return _running_at(mine, t), max((x["started_at"] for x in mine if x["started_at"] < t), default=0.0)

        waiting = [who for who, mine in by_owner.items()
                   if created[who] <= t and any(x["started_at"] >= t for x in mine)]
        chosen = owner[claim["job_id"]]
        contested += len(waiting) > 1
        better = [who for who in waiting if key(who) < key(chosen)]
        if better:
            bad.append(f"task {claim['id']} of {chosen[:6]} {key(chosen)} claimed while "
                       + ", ".join(f"{w[:6]} {key(w)}" for w in better) + " waited")
    return bad, contested


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
    # a page exception in a session process is reported in full, not as Streamlit's redacted notice
    monkeypatch.setenv("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")
    monkeypatch.chdir(ROOT)
    sessions = [_session(root, seed) for seed in range(1, SESSIONS + 1)]
    jobs_dir = root / "_jobs"
    try:
        with mp.get_context("spawn").Pool(SESSIONS) as pool:  # leaving it terminates the processes
            pending = [pool.apply_async(_start_sweep, (ws,)) for ws in sessions]
            # every session process has started (imports and all) and run its two page runs
            errors = [e for p in pending for e in p.get(timeout=scaled(120))]
        assert not errors, "\n\n".join(errors)
        store = JobStore(jobs_dir)
        jobs = store.jobs()
        assert sorted(j["owner"] for j in jobs) == sorted(sessions), "one job per session"
        wait_for(lambda: store.unfinished() == 0, timeout=180, what="every session's job to finish", interval=0.5)
        # a session reloading its page after the jobs ran sees its own job done
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=scaled(60))
        at.query_params["ws"] = sessions[0]
        at.switch_page("pages/compress.py").run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("— done" in e.label for e in at.expander), [e.label for e in at.expander]
    finally:
        stopped = stop_runner(jobs_dir, timeout=scaled(15))
    assert stopped and not runner_alive(jobs_dir)
    tasks = store.tasks()
    assert len(tasks) == SESSIONS * 6
    assert all(t["status"] == "done" and t["attempts"] == 1 for t in tasks), \
        [(t["status"], t["error"]) for t in tasks if t["status"] != "done"]
    log = (jobs_dir / "runner.log").read_text()
    assert log.count(" started: executor=local") == 1 and "Traceback" not in log, log
    assert _max_overlap(tasks) <= WORKERS, "the concurrency limit must hold"
    unfair, contested = _unfair_claims(jobs, tasks)
    assert not unfair, unfair
    assert contested >= SESSIONS, "the sessions never competed for a worker: fairness was not exercised"
