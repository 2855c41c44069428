"""A user-supplied mask or label drives the protected region (the CTU maps) in the library, the CLI
and the app's jobs, while accuracy stays measured against the label (issue 16: the remedy when the
built-in model's mask is unlikely to be right)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from dmic_core.app_actions import compress_tasks
from dmic_core.cli import main as cli
from dmic_core.errors import DmicInputError
from dmic_core.maps import foreground_ctus
from dmic_core.methods import PointSpec
from dmic_core.runs import CaseSpec, cached_case, run_point


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("protect")
    rng = np.random.default_rng(5)
    hu = rng.normal(40, 60, (192, 192, 6)).astype(np.int16)  # NIfTI x, y, z
    label = np.zeros(hu.shape, np.uint8)
    label[20:40, 20:40, :] = 1       # the "label" in one corner
    roi = np.zeros(hu.shape, np.uint8)
    roi[150:170, 150:170, :] = 1     # the user's own region: the opposite corner
    affine = np.diag([0.4, 0.4, 0.5, 1.0])
    paths = {}
    for name, data in (("image", hu), ("label", label), ("roi", roi)):
        paths[name] = str(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    return paths


def test_the_roi_file_becomes_the_protected_region_and_the_label_stays_the_reference(files):
    case = cached_case(CaseSpec(files["image"], files["label"], "builtin", None, files["roi"]))
    own = cached_case(CaseSpec(files["image"], files["roi"], "builtin"))
    assert np.array_equal(case.reference.roi, own.reference.reference)  # the roi file, on the canonical grid
    label_case = cached_case(CaseSpec(files["image"], files["label"], "builtin"))
    assert np.array_equal(case.reference.reference, label_case.reference.reference)
    assert not np.array_equal(case.reference.roi, case.reference.reference)


def test_a_map_method_protects_the_roi_ctus(files):
    case = cached_case(CaseSpec(files["image"], files["label"], "builtin", None, files["roi"]))
    result = run_point(case, PointSpec("sqrt", 30))
    offsets = result.qp_map - np.asarray(result.paper_frame_qps)[:, None, None]
    fg = foreground_ctus(case.reference.roi)
    assert fg.any() and (~fg).any()
    assert offsets[fg].max() <= 0 < offsets[~fg].min()


def test_cli_sweep_mask_and_app_jobs_carry_the_region(files, tmp_path):
    assert cli(["sweep", files["image"], "--label", files["label"], "--mask", files["roi"], "--methods", "hevc,sqrt",
                "--qps", "22,30", "--workers", "1", "--out", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "points.csv").is_file()
    current = {"image": files["image"], "label": files["label"], "name": "image.nii.gz"}
    tasks = compress_tasks(tmp_path / "job", current, ["hevc"], [30], [], {"codec": "x265"}, "builtin",
                           protect="label")
    assert all(t.params["roi"] == files["label"] for t in tasks)
    assert all(t.params["roi"] is None for t in compress_tasks(tmp_path / "j2", current, ["hevc"], [30], [],
                                                                {"codec": "x265"}, "builtin"))
    with pytest.raises(DmicInputError, match="no label"):
        compress_tasks(tmp_path / "j3", {**current, "label": None}, ["hevc"], [30], [], {}, "builtin", protect="label")
    json.dumps(tasks[0].params)  # job params stay JSON
