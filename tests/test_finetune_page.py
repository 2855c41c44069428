"""The Fine-tune page (AppTest): start goes to the background helper, a run's curves show, cancel
writes the cancel file, "use for later jobs" records the checkpoint for the workspace."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from polling import scaled
from test_finetune import random_pretrained

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def ws(tmp_path, monkeypatch):
    root = tmp_path / "root"
    ws_id = uuid.uuid4().hex
    (root / ws_id).mkdir(parents=True)
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(root))
    monkeypatch.chdir(ROOT)
    return root, ws_id


def _app(ws) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=scaled(60))
    at.query_params["ws"] = ws[1]
    at.switch_page("pages/finetune.py")
    return at


def _fake_run(ws, state: str) -> Path:
    root, ws_id = ws
    out = root / ws_id / "finetune" / "runs" / "r1" / "agents.pt"
    out.parent.mkdir(parents=True)
    random_pretrained(out)
    cfg = {"data": "x", "shots": 1, "strategy": "a2c", "iterations": 30}
    (out.parent / "agents.status.json").write_text(json.dumps(
        {"state": state, "phase": "train", "done": 20, "total": 30, "eta_s": 5.0, "pid": 0 if state != "running"
         else __import__("os").getpid(), "config": cfg}))
    rows = [{"iteration": i, "reward": -1.0 + i / 100, "loss_frame": 0.5, "loss_ctu": 0.1} for i in (10, 20)]
    (out.parent / "agents.log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return out


def test_page_without_runs_starts_in_background(ws, monkeypatch):
    calls = []
    import dmic_core.finetune.background as bg

    monkeypatch.setattr(bg, "start", lambda cfg, out, resume=False, env=None, before=None: calls.append(
        (cfg, out, before)) or 1)
    at = _app(ws).run()
    assert not at.exception, at.exception
    assert at.info  # "no runs yet"
    at.button(key="FormSubmitter:ft_form-Start fine-tuning").click().run()
    assert not at.exception, at.exception
    assert len(calls) == 1
    cfg, out, before = calls[0]
    assert cfg.strategy == "a2c" and cfg.shots == 1 and cfg.iterations == 1000
    assert before and before[0][0] == "phantom"  # phantoms are generated in the background process too
    assert Path(out).name == "agents.pt"


def test_run_card_curves_cancel_and_use(ws):
    out = _fake_run(ws, "running")
    at = _app(ws).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 1
    at.button(key="ft_cancel_r1").click().run()
    assert (out.parent / "agents.cancel").is_file()
    # a finished run can be chosen for later jobs
    status = json.loads((out.parent / "agents.status.json").read_text())
    (out.parent / "agents.status.json").write_text(json.dumps({**status, "state": "done"}))
    at = _app(ws).run()
    at.button(key="ft_use_r1").click().run()
    assert not at.exception, at.exception
    from dmic_core.finetune.background import active_checkpoint

    assert active_checkpoint(ws[0] / ws[1]) == str(out)
    assert at.success
