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
    assert job["title"] == "hevc vs dmic · 4 points · x265 · all slices · case 1"
    assert job["params"]["methods"] == ["hevc", "dmic"] and job["params"]["slices"] is None
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


def test_compress_job_on_a_slab_names_it_and_passes_it_to_every_task(tmp_path, runner_calls):
    store = JobStore(tmp_path / "_jobs")
    setup = {"codec": "x265", "bit_depth": 12}
    slab = app_actions.resolve_slab("quick", 164)
    assert slab == (74, 90)
    job_id, _ = app_actions.start_compress_job(store, "ws1", tmp_path / "ws1", CURRENT, ["hevc"], [22, 27], [],
                                               setup, "builtin", slices=slab, n_frames=164)
    assert {tuple(t["params"]["slices"]) for t in store.tasks(job_id)} == {(74, 90)}
    assert "slices 75-90 of 164" in store.jobs(owner="ws1")[0]["title"]


def test_resolve_slab_reads_one_based_ranges_and_refuses_bad_ones():
    from dmic_core.errors import DmicInputError

    assert app_actions.resolve_slab("all", 164) is None
    assert app_actions.resolve_slab("quick", 12) is None  # shorter than the quick slab: everything
    assert app_actions.resolve_slab("custom", 164, "60-75") == (59, 75)
    for bad in ("75-60", "0-10", "1-165", "sixty"):
        with pytest.raises(DmicInputError):
            app_actions.resolve_slab("custom", 164, bad)


def test_public_error_names_the_users_file_and_leaks_no_path(tmp_path):
    from dmic_core.errors import DmicInputError

    stored = str(tmp_path / ".dmic" / "workspaces" / "0123abcd" / "uploads" / "feedbeef" / "image.nii.gz")
    exc = DmicInputError(f"not a readable NIfTI image (File {stored} is not a gzip file)", stored)
    text = app_actions.public_error(exc, "volume", stored, "notes.nii.gz")
    assert text == "notes.nii.gz: not a readable NIfTI image (File notes.nii.gz is not a gzip file)"
    other = app_actions.public_error(OSError("cannot open /srv/dmic/ws/x/recon.nii.gz"), "job outputs")
    assert "/srv" not in other and other.endswith("recon.nii.gz")


def test_task_lines_say_what_a_task_is_doing():
    running = {"method": "hevc", "setting": 27.0, "status": "running", "progress_done": 164, "progress_total": 164,
               "attempts": 1}
    text, frac = app_actions.task_status_text(running)
    assert "segmenting" in text and "164/164" not in text and frac == 1.0
    text, frac = app_actions.task_status_text({**running, "progress_done": 10})
    assert text == "HEVC QP 27: coding frame 10/164" and abs(frac - 10 / 164) < 1e-9
    done = {"method": "dmic", "setting": 10.0, "status": "done", "summary": {"bpp": 0.1, "vessel_iou": 0.8,
                                                                           "dice": 0.9, "miou": 0.9, "psnr_hu": 50}}
    assert app_actions.task_status_text(done)[0].startswith("DMIC λ 10: **done**")


def test_each_tab_keeps_its_own_current_volume(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    id_a = app_actions.save_current(ws, {"image": str(a), "label": None, "name": "a"})
    id_b = app_actions.save_current(ws, {"image": str(b), "label": None, "name": "b"})  # another tab, later
    assert id_a != id_b
    assert app_actions.read_current(ws, id_a)[0]["name"] == "a"  # the first tab's reload: still its volume
    assert app_actions.read_current(ws, None)[0]["name"] == "b"  # a new tab: the volume loaded last
    assert app_actions.read_current(ws, "../../etc")[0]["name"] == "b"  # not an id: ignored
    assert app_actions.read_current(tmp_path / "other", id_a) == (None, None)  # another workspace sees nothing


def test_existing_folder_is_only_accepted_under_the_data_roots(tmp_path):
    from dmic_core.errors import DmicInputError

    data = tmp_path / "data"
    (data / "imagecas").mkdir(parents=True)
    ws = tmp_path / "ws"
    ws.mkdir()
    assert app_actions.allowed_data_folder(str(data / "imagecas"), ws, [data]) == (data / "imagecas").resolve()
    assert app_actions.allowed_data_folder("imagecas", ws, [data]) == (data / "imagecas").resolve()
    for bad in ("/etc", str(data / ".." / "ws" / ".." / ".."), "../../etc"):
        with pytest.raises(DmicInputError) as info:
            app_actions.allowed_data_folder(bad, ws, [data])
        assert "/etc" not in str(info.value)
    with pytest.raises(DmicInputError):
        app_actions.allowed_data_folder(str(data / "missing"), ws, [data])


def test_codec_choices_put_hm_first_and_state_x265s_measured_speed_up():
    from dmic_core.app_actions import codec_choices

    both = codec_choices(["x265", "hm"])
    assert list(both) == ["hm", "x265"]
    assert "less encode time than HM" in both["x265"] and "BD-rate" in both["x265"]
    assert list(codec_choices(["x265"])) == ["x265"]


def test_load_button_only_for_a_complete_selection_not_loaded_yet():
    state = app_actions.load_button_state
    # no file on the server yet (a first upload still on its way): disabled
    assert state(None, None, None, None)[0] is False
    assert state(None, ("l1", "label.nii.gz"), None, None)[0] is False
    enabled, hint = state(("f1", "a.nii.gz"), ("l1", "label.nii.gz"), None, None)
    assert enabled and hint == "Ready to load: `a.nii.gz` with the label `label.nii.gz`."
    loaded = ("f1", "l1", "/ws/uploads/x/image.nii.gz")
    # the uploaders still hold what was loaded (a replacement not arrived yet): disabled
    enabled, hint = state(("f1", "a.nii.gz"), ("l1", "label.nii.gz"), loaded, loaded[2])
    assert not enabled and hint.startswith("Loaded: `a.nii.gz`")
    # a new image, a new or removed label, or another current volume (Home's example): enabled
    assert state(("f2", "b.dcm"), ("l1", "label.nii.gz"), loaded, loaded[2]) == (
        True, "Ready to load: `b.dcm` with the label `label.nii.gz`.")
    assert state(("f1", "a.nii.gz"), ("l2", "other.nii.gz"), loaded, loaded[2])[0]
    assert state(("f1", "a.nii.gz"), None, loaded, loaded[2]) == (True, "Ready to load: `a.nii.gz` (no label).")
    assert state(("f1", "a.nii.gz"), ("l1", "label.nii.gz"), loaded, "/ws/example/image.nii.gz")[0]
    # a file name is shown as code: Markdown never turns its * or _ into emphasis
    assert state(("f3", "scan_*1*_.nii.gz"), None, None, None)[1] == "Ready to load: `scan_*1*_.nii.gz` (no label)."
