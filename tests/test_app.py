"""Every page of the app with streamlit's AppTest, on tiny real volumes and a real finished job."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dmic_core.jobs import JobStore, Runner, TaskSpec
from polling import join_all, scaled

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = scaled(60)  # seconds one AppTest script run may take (AppTest's own default is 3)


def _tiny_case(folder: Path) -> tuple[Path, Path]:
    """A 10-slice 96x128 'CT' with a bright tube and its label."""
    rng = np.random.default_rng(3)
    hu = rng.normal(40, 30, (128, 96, 10)).astype(np.int16)  # file axes x, y, z
    label = np.zeros(hu.shape, np.uint8)
    label[60:70, 40:52, :] = 1
    hu[label > 0] = 400
    affine = np.diag([0.6, 0.6, 1.0, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu, affine), str(folder / "image.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(folder / "label.nii.gz"))
    return folder / "image.nii.gz", folder / "label.nii.gz"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace root with one session: a current volume and a finished HEVC + rate-control job."""
    root = tmp_path_factory.mktemp("ws_root")
    ws_id = uuid.uuid4().hex
    ws = root / ws_id
    image, label = _tiny_case(ws / "uploads" / "x")
    (ws / "current.json").write_text(json.dumps({"image": str(image), "label": str(label), "name": "tiny",
                                                 "label_name": "tiny label"}))
    setup = {"codec": "x265", "bit_depth": 10, "window": [-1024.0, 3072.0]}
    params = {"label": str(label), "segmenter": "gt", "setup": setup}
    job_dir = ws / "jobs" / "job1"
    tasks = [TaskSpec("point", str(image), m, q, str(job_dir / f"{m}_{q}"), params)
             for m, q in (("hevc", 27), ("hevc", 37), ("ratecontrol", 27), ("ratecontrol", 37))]
    store = JobStore(root / "_jobs")
    store.create_job(ws_id, tasks, job_id="job1", title="hevc, ratecontrol on tiny",
                     params={"image": str(image), "label": str(label), "name": "tiny", "segmenter": "gt",
                             "setup": setup, "methods": ["hevc", "ratecontrol"]})
    runner = Runner(root / "_jobs", workers=1, idle_exit=0.3)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    join_all([thread], timeout=120, what="the runner to finish the fixture's job")
    statuses = [(t["status"], t["error"]) for t in store.tasks("job1")]
    assert all(s == "done" for s, _ in statuses), statuses
    return root, ws_id


def _app(workspace, monkeypatch) -> AppTest:
    root, ws_id = workspace
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(root))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["ws"] = ws_id
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_home(workspace, monkeypatch):
    at = _app(workspace, monkeypatch).run()
    assert not at.exception
    assert at.title[0].value == "DMIC Studio"
    assert any("tiny" in s.value for s in at.success)


def test_new_session_gets_its_own_workspace(workspace, monkeypatch):
    root, ws_id = workspace
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    other = at.session_state["ws_id"]
    assert other != ws_id and (root / other).is_dir()
    at.switch_page("pages/curves.py").run()
    assert not at.exception and any("No finished rate points" in i.value for i in at.info)


def test_upload_page_views_and_overlays(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/upload.py").run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert len(at.get("image")) == 3
    # nothing uploaded in this session: Load stays disabled until a file has arrived in full
    assert at.button(key="up_load").disabled
    assert any("once the CT volume's upload has finished" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 1  # the cursor readout (HU and mm) is on by default, axial
    at.selectbox(key="up_window").select("custom").run()
    at.selectbox(key="up_ctu_kind").select("two-level").run()
    at.slider(key="up_axial_idx").set_value(2).run()
    assert not at.exception and not _errors(at)
    at.slider(key="up_coronal_idx").set_value(10).run()
    assert not at.exception
    assert at.get("image")[0].proto.imgs[0].caption.startswith("axial 2/10 · 1.0 mm · top A, bottom P, left R")
    at.selectbox(key="up_readout").select("off").run()
    assert not at.exception and len(at.get("plotly_chart")) == 0
    at.selectbox(key="up_readout").select("coronal").run()  # hover readout of HU and mm
    assert not at.exception and len(at.get("plotly_chart")) == 1
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["hovertemplate"].endswith("<br>coronal 10/96 at 5.4 mm<extra></extra>")
    # the overlay names its model: segment with the lighter one, and its mask is a source of its own
    assert any(o.startswith("builtin-lite (") for o in at.selectbox(key="up_seg_model").options)
    at.selectbox(key="up_seg_model").set_value("builtin-lite").run()
    at.button(key="up_segment").click().run()
    assert not at.exception, at.exception
    assert "model: builtin-lite" in at.selectbox(key="up_mask_src").options
    assert at.selectbox(key="up_seg_model").options[0].startswith("builtin (")  # the others still offered


def test_upload_bad_file_shows_one_line_error(workspace, monkeypatch, tmp_path):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/upload.py").run()
    # AppTest cannot drive file_uploader; the same code path is exercised through save/load directly.
    from dmic_core.errors import DmicInputError
    from dmic_core.io import load_volume

    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a volume")
    with pytest.raises(DmicInputError) as info:
        load_volume(bad)
    assert "\n" not in str(info.value) and "bad.nii.gz" in str(info.value)


def test_compress_page_lists_jobs_and_starts_one(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/compress.py").run()
    assert not at.exception, at.exception
    assert any("hevc, ratecontrol on tiny" in e.label for e in at.expander)
    at.multiselect(key="cmp_methods").set_value(["hevc"])
    at.multiselect(key="cmp_qps").set_value([42])
    options = at.selectbox(key="cmp_segmenter").options
    assert options[0].startswith("builtin (")  # the default model first
    assert any(o.startswith("builtin-lite") for o in options)  # the lighter model is offered, named as its own
    from dmic_core.segmentation.builtin import cpu_has_native_bf16

    # bf16 is offered exactly where it runs faster than float32 (native bf16), never where refused
    assert any(o.startswith("builtin-bf16") for o in options) == cpu_has_native_bf16()
    assert "no accuracy" in options[-1]  # gt: explained, not offered as a score
    at.selectbox(key="cmp_segmenter").set_value("gt")
    at.button[0].click().run()  # form submit
    assert not at.exception, at.exception
    root, ws_id = workspace
    jobs = JobStore(root / "_jobs").jobs(ws_id)
    assert len(jobs) == 2
    newest = jobs[0]
    from dmic_core.jobs import stop_runner

    JobStore(root / "_jobs").cancel_job(newest["id"])
    stop_runner(root / "_jobs", timeout=scaled(15))


def test_compress_page_runs_dmic_with_the_chosen_shipped_agents(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/compress.py").run()
    labels = at.selectbox(key="cmp_agents").options
    assert labels[0].startswith("agents_dmic.pt") and any(o.startswith("agents_extended.pt") for o in labels)
    at.multiselect(key="cmp_methods").set_value(["dmic"])
    at.multiselect(key="cmp_lambdas").set_value([10.0])
    at.selectbox(key="cmp_agents").set_value(next(o for o in labels if o.startswith("agents_extended.pt")))
    at.button[0].click().run()  # form submit
    assert not at.exception, at.exception
    root, ws_id = workspace
    store = JobStore(root / "_jobs")
    newest = store.jobs(ws_id)[0]
    (task,) = store.tasks(newest["id"])
    assert task["method"] == "dmic" and task["params"]["options"]["agents"].endswith("agents_extended.pt")
    from dmic_core.jobs import stop_runner

    store.cancel_job(newest["id"])
    stop_runner(root / "_jobs", timeout=scaled(15))


def test_compare_page(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert not _errors(at)
    # three views, the QP-offset map (rate control sets none: a caption instead) and two difference
    # maps with colour bars, and the per-slice bits
    assert len(at.get("plotly_chart")) >= 6
    table = at.dataframe[0].value
    assert table.shape[0] == 2 and table["vessel |ΔHU| mean ↓"].iloc[0] != "n/a"
    at.selectbox(key="cmpr_plane").select("coronal").run()
    at.toggle(key="cmpr_acc").set_value(True).run()
    assert not at.exception and not _errors(at)


def test_curves_page(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/curves.py").run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 5  # vessel IoU, Dice, mIoU, PSNR, HU error in vessels
    assert any("1.0 at every rate by construction" in w.value for w in at.warning)  # the job was scored by gt
    # two HEVC points: BD is undefined, and the page says why in the one sentence the library gives
    assert any("at least 4 rate points per curve" in i.value for i in at.info)
    points = at.dataframe[0].value
    assert {"Base QP", "Rate (bits/voxel)", "Vessel IoU ↑", "Vessel |ΔHU| mean ↓"} <= set(points.columns)
    assert points["Vessel |ΔHU| mean ↓"].notna().all()


def test_finetune_page(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/finetune.py").run()
    assert not at.exception
    assert at.info


def test_downloads_page(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    at.switch_page("pages/downloads.py").run()
    assert not at.exception, at.exception
    assert not _errors(at)
    assert len(at.get("download_button")) >= 6


@pytest.mark.slow
def test_home_example_generates_a_phantom(tmp_path, monkeypatch):
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(tmp_path))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=scaled(120)).run()
    at.button(key="home_example").click().run()
    assert not at.exception, at.exception
    ws = tmp_path / at.session_state["ws_id"]
    assert (ws / "example" / "image.nii.gz").is_file() and (ws / "example" / "label.nii.gz").is_file()
    assert json.loads((ws / "current.json").read_text())["label"].endswith("label.nii.gz")
