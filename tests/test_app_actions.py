"""The app's actions (dmic_core.app_actions): what each page button queues, without Streamlit or workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmic_core import app_actions
from dmic_core.jobs import JobStore

CURRENT = {"image": "/data/image.nii.gz", "label": "/data/label.nii.gz", "name": "case 1"}


@pytest.fixture
def runner_calls(monkeypatch) -> list[tuple[str, float]]:
    """Record runner starts instead of spawning a detached runner."""
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(app_actions, "ensure_runner",
                        lambda workspace, idle_exit: calls.append((str(workspace), idle_exit)) or True)
    return calls


def test_compress_job_queues_one_task_per_point_and_starts_the_runner(tmp_path, runner_calls):
    store = JobStore(tmp_path / "_jobs")
    setup = {"codec": "x265", "bit_depth": 12, "window": [-1024.0, 3072.0]}
    job_id, n = app_actions.start_compress_job(store, "ws1", tmp_path / "ws1", CURRENT, ["hevc", "dmic"], [32, 22],
                                               [10.0, 1.0], setup, "builtin", agents="/ckpt/agents.pt")
    tasks = store.tasks(job_id)
    assert n == len(tasks) == 4
    assert [(t["method"], t["setting"]) for t in tasks] == [("hevc", 22.0), ("hevc", 32.0), ("dmic", 1.0),
                                                            ("dmic", 10.0)]
    assert all(t["params"]["setup"] == setup and t["params"]["label"] == CURRENT["label"] for t in tasks)
    dmic_only = {"agents": "/ckpt/agents.pt"}
    assert [t["params"].get("options") for t in tasks] == [None, None, dmic_only, dmic_only]
    assert tasks[0]["out_dir"] == str(tmp_path / "ws1" / "jobs" / job_id / "hevc_22")
    job = store.jobs(owner="ws1")[0]
    assert job["title"] == "hevc, dmic on case 1" and job["params"]["methods"] == ["hevc", "dmic"]
    assert runner_calls == [(str(tmp_path / "_jobs"), app_actions.RUNNER_IDLE_EXIT_S)]


def test_comparison_job_runs_the_checkpoint_against_hevc(tmp_path, runner_calls):
    store = JobStore(tmp_path / "_jobs")
    ckpt = tmp_path / "runs" / "r1" / "agents.pt"
    job_id = app_actions.start_comparison_job(store, "ws1", tmp_path / "ws1", ckpt, CURRENT)
    tasks = store.tasks(job_id)
    assert sorted({t["method"] for t in tasks}) == ["dmic", "hevc"]
    assert len(tasks) == len(app_actions.COMPARISON_QPS) + len(app_actions.COMPARISON_LAMBDAS)
    assert all(t["params"]["options"] == {"agents": str(ckpt)} for t in tasks)
    assert store.job(job_id)["params"]["agents"] == str(ckpt)
    assert len(runner_calls) == 1


def test_finetune_run_generates_phantoms_first(tmp_path, monkeypatch):
    from dmic_core.finetune import background

    started = {}
    monkeypatch.setattr(background, "start", lambda cfg, out, before=None: started.update(cfg=cfg, out=out,
                                                                                         before=before))
    out = app_actions.start_finetune_run(tmp_path, {"kind": "phantoms", "seed": 7000, "count": 3, "slices": 9},
                                         "a2c", 1, 5)
    assert out == started["out"] and out.parent.parent == tmp_path / "runs" and out.name == "agents.pt"
    folder = tmp_path / "data" / "phantoms-7000-3-9"
    assert started["before"] == [["phantom", "--seed", "7000", "--count", "3", "--slices", "9", "--out", str(folder)]]
    assert Path(started["cfg"].data) == folder and started["cfg"].strategy == "a2c"

    app_actions.start_finetune_run(tmp_path, {"kind": "folder", "path": "/data/cas"}, "full", 1, 5, val_volumes=1)
    assert started["before"] == [] and started["cfg"].data == "/data/cas" and started["cfg"].val_volumes == 1
