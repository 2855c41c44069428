"""``dmic batch`` end to end on tiny phantom datasets: real encodes, the gt segmenter, the store.

Covers discovery (ImageCAS folder, CSV with and without header, refusals), one task per
(volume, method, setting), the tables, resuming (finished tasks skipped, new rate points added),
refusing a folder run with other settings, the CLI's exit codes, and the Ray executor on a local
runtime (same tasks, same results as local processes).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dmic_core.batch import BatchConfig, discover, run_batch
from dmic_core.batch.plan import plan_tasks
from dmic_core.cli import main as dmic_main
from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.errors import DmicInputError
from polling import scaled

ROOT = Path(__file__).resolve().parents[1]
CONFIG = BatchConfig(methods=("hevc", "linear"), qps=(22.0, 27.0, 32.0, 37.0), segmenter="gt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two 128x128x16 phantoms with labels in the ImageCAS layout (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("imagecas")
    for case_id, sub in (("1", root), ("2", root / "part2")):
        volume, label = generate_phantom(int(case_id), 16, size=128)
        write_imagecas_pair(volume, label, sub, case_id)
    return root


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name
                                                                       or p.name.endswith(".tmp"))]


# --- discovery --------------------------------------------------------------------------------

def test_discover_imagecas_folder(dataset):
    entries = discover(dataset)
    assert [e.case_id for e in entries] == ["1", "2"]
    assert all(Path(e.image).is_file() and e.label and Path(e.label).is_file() for e in entries)


def test_discover_csv_with_header_relative_paths_and_ids(dataset, tmp_path):
    csv = dataset / "list.csv"
    csv.write_text("id,image,label\nalpha,1.img.nii.gz,1.label.nii.gz\nbeta,part2/2.img.nii.gz,\n")
    entries = discover(csv)
    assert [(e.case_id, Path(e.image).name, e.label and Path(e.label).name) for e in entries] == [
        ("alpha", "1.img.nii.gz", "1.label.nii.gz"), ("beta", "2.img.nii.gz", None)]
    bare = tmp_path / "bare.csv"
    bare.write_text(f"{dataset / '1.img.nii.gz'},{dataset / '1.label.nii.gz'}\n")
    (entry,) = discover(bare)
    assert entry.case_id == "1" and entry.label.endswith("1.label.nii.gz")


@pytest.mark.parametrize("text,match", [
    ("image,label\nmissing.nii.gz,\n", "line 2: image file not found: missing.nii.gz"),
    ("image,label\n", "lists no volumes"),
    ("", "CSV is empty"),
    ("image\n1.img.nii.gz\n1.img.nii.gz\n", "volume listed twice"),
])
def test_discover_csv_refusals(dataset, text, match):
    csv = dataset / "bad.csv"
    csv.write_text(text)
    with pytest.raises(DmicInputError, match=match) as info:
        discover(csv)
    assert str(info.value).startswith("bad.csv: ") and "\n" not in str(info.value)


def test_discover_refuses_empty_folder_and_other_files(tmp_path):
    with pytest.raises(DmicInputError, match="no ImageCAS volumes"):
        discover(tmp_path)
    with pytest.raises(DmicInputError, match="dataset not found"):
        discover(tmp_path / "nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DmicInputError, match="folder in the ImageCAS layout or a CSV"):
        discover(tmp_path / "x.json")


def test_plan_is_one_task_per_volume_method_setting(dataset, tmp_path):
    config = BatchConfig(methods=("hevc", "linear", "dmic"), qps=(22.0, 32.0), lambdas=(1.0,), segmenter="gt")
    tasks = plan_tasks(discover(dataset), config, tmp_path)
    keys = {(Path(t.volume).name, t.method, t.setting) for t in tasks}
    assert len(tasks) == len(keys) == 2 * (2 + 2 + 1)
    assert all(t.kind == "point" and t.params["segmenter"] == "gt" for t in tasks)


# --- running ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_batch(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "run"
    result = run_batch(dataset, out, CONFIG, workers=1, progress=False)
    return out, result


def test_batch_runs_every_task_and_writes_tables(finished_batch):
    out, result = finished_batch
    assert result.complete and result.counts["done"] == 16 and result.tasks_run == 16, result.failures
    points = pd.read_csv(out / "points.csv")
    assert len(points) == 16 and set(points.case_id.astype(str)) == {"1", "2"}
    assert (points.bits > 0).all() and points.miou.between(0, 1).all()
    for case_id, group in points[points.method == "hevc"].groupby("case_id"):
        assert group.sort_values("setting").bpp.is_monotonic_decreasing, case_id  # higher QP, fewer bits
    per_volume = pd.read_csv(out / "bd_per_volume.csv")
    assert sorted(per_volume.case_id.astype(str)) == ["1", "2"] and set(per_volume.method) == {"linear"}
    assert per_volume.bd_psnr_db.notna().all()  # PSNR curves are strictly monotonic: BD defined
    per_method = json.loads((out / "bd_per_method.json").read_text())  # strict JSON (no NaN)
    (row,) = per_method["rows"]
    assert row["method"] == "linear" and row["volumes"] == 2 and row["bd_psnr_db_n"] == 2
    assert row["mean_curve_volumes"] == 2 and row["bd_psnr_db_mean_curve"] is not None
    tasks = pd.read_csv(out / "tasks.csv")
    assert (tasks.status == "done").all() and (tasks.attempts == 1).all()
    with sqlite3.connect(out / "jobs.sqlite") as con:  # one row per task in the embedded store
        assert con.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0] == 16
    for folder in (out / "points").glob("*/*"):
        assert {"result.json", "stream.hevc", "recon.nii.gz"} <= {p.name for p in folder.iterdir()}
    assert not _partials(out)


def test_rerun_skips_finished_and_adds_new_points(finished_batch, dataset):
    out, _ = finished_batch
    stamps = {p: p.stat().st_mtime_ns for p in (out / "points").rglob("result.json")}
    again = run_batch(dataset, out, CONFIG, workers=1, progress=False)
    assert again.tasks_run == 0 and again.counts["done"] == 16
    more = BatchConfig(methods=CONFIG.methods, qps=CONFIG.qps + (17.0,), segmenter="gt")
    extended = run_batch(dataset, out, more, workers=1, progress=False)
    assert extended.tasks_run == 4 and extended.counts["done"] == 20
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "finished results must not be redone"


def test_rerun_with_other_settings_is_refused(finished_batch, dataset):
    out, _ = finished_batch
    other = BatchConfig(methods=CONFIG.methods, qps=CONFIG.qps, segmenter="gt", setup={"bit_depth": 8})
    with pytest.raises(DmicInputError, match="other settings \\(setup\\)"):
        run_batch(dataset, out, other, progress=False)


def test_cli_refusals_are_one_line_exit_2(dataset, tmp_path, capsys):
    assert dmic_main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert dmic_main(["batch", str(dataset), "--out", str(tmp_path / "o"), "--methods", "hevc,bogus",
                      "--segmenter", "gt"]) == 2
    (tmp_path / "nolabel").mkdir()
    volume, _ = generate_phantom(5, 4, size=64)
    import numpy as np

    write_imagecas_pair(volume, np.zeros(volume.hu.shape, np.uint8), tmp_path / "nolabel", "9")
    (tmp_path / "nolabel" / "9.label.nii.gz").unlink()
    assert dmic_main(["batch", str(tmp_path / "nolabel"), "--out", str(tmp_path / "o"), "--segmenter", "gt",
                      "--methods", "hevc"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 3 and all(line.startswith("dmic batch: error: ") for line in lines), lines
    assert "dataset not found" in lines[0] and "bogus" in lines[1] and "needs a label" in lines[2]


def test_cli_subprocess_slices_and_json(dataset, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "dmic_core.cli", "batch", str(dataset), "--out", str(out),
                           "--methods", "hevc", "--qps", "27,37", "--segmenter", "gt", "--slices", "4:12",
                           "--workers", "1"], capture_output=True, text=True, cwd=ROOT, timeout=scaled(120))
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["counts"]["done"] == 4 and payload["executor"] == "local"
    assert "batch:" in proc.stderr and "ETA" in proc.stderr  # the progress bar
    import nibabel as nib

    recons = sorted((out / "points").rglob("recon.nii.gz"))
    assert len(recons) == 4 and all(8 in nib.load(r).shape for r in recons)  # 4:12 kept eight frames
    assert json.loads((out / "bd_per_volume.json").read_text())["meta"]["slices"] == "4:12"


@pytest.mark.slow
def test_ray_local_runtime_matches_local_processes(finished_batch, dataset, tmp_path):
    """The Ray executor (private local runtime, 2 CPUs) runs the same tasks to the same numbers."""
    out, _ = finished_batch
    ray_out = tmp_path / "ray"
    result = run_batch(dataset, ray_out, CONFIG, executor="ray", workers=2, progress=False)
    assert result.complete and result.counts["done"] == 16 and result.executor == "ray", result.failures
    local = pd.read_csv(out / "points.csv")
    local = local[local.setting != 17.0].sort_values(["case_id", "method", "setting"]).reset_index(drop=True)
    remote = pd.read_csv(ray_out / "points.csv").sort_values(["case_id", "method", "setting"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(local[["case_id", "method", "setting", "bits", "miou"]],
                                  remote[["case_id", "method", "setting", "bits", "miou"]])
    import ray

    assert not ray.is_initialized(), "the private runtime must be shut down"
