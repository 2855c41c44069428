"""One home per fact: the CLI, the app's pages and the library agree because they read one source.

Each test reaches a fact through the entry points users reach it by (argparse defaults and choices,
the pages under streamlit's AppTest, real encodes through ``dmic compress`` and ``dmic batch``, the
agents' environment) and checks it against its home: :mod:`dmic_core.defaults` or the registry
that defines the names.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmic_core import defaults
from dmic_core.agents.handcrafted import HANDCRAFTED, SHAPES
from dmic_core.agents.strategies import DEFAULT_STRATEGY, STRATEGIES, STRATEGY_NAMES
from dmic_core.cli import build_parser
from dmic_core.cli import main as dmic_main
from dmic_core.defaults import (APP_LAMBDAS, APP_QPS, DEFAULT_AGENTS, LAMBDA_GRID, PRETRAINED_AGENTS, PSNR_PEAK_HU,
                                QP_GRID)
from dmic_core.errors import DmicInputError
from dmic_core.methods import METHOD_NAMES, REGISTRY
from dmic_core.transforms.hu import SampleMapping

ROOT = Path(__file__).resolve().parents[1]


def _subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def _option(command: str, dest: str):
    return next(a for a in _subparser(command)._actions if a.dest == dest)


def _tiny_case(folder: Path, name: str = "tiny", vessel: bool = True) -> tuple[Path, Path]:
    """A 6-slice 96x128 'CT' (file axes x, y, z) with a bright tube and its label (ImageCAS names)."""
    rng = np.random.default_rng(5)
    hu = rng.normal(40, 30, (128, 96, 6)).astype(np.int16)
    label = np.zeros(hu.shape, np.uint8)
    if vessel:
        label[60:70, 40:52, :] = 1
        hu[label > 0] = 400
    hu[:8, :8, :] = 1500  # calcium-bright corner: outside the CCTA window, inside the full range
    affine = np.diag([0.6, 0.6, 1.0, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    image, lab = folder / f"{name}.img.nii.gz", folder / f"{name}.label.nii.gz"
    nib.save(nib.Nifti1Image(hu, affine), str(image))
    nib.save(nib.Nifti1Image(label, affine), str(lab))
    return image, lab


# --- names come from registries -------------------------------------------------------------------

def test_method_names_are_the_decider_registry_everywhere():
    from dmic_core.experiments import curves as experiments_curves
    from dmic_core.plotting import METHOD_LABELS

    assert METHOD_NAMES == tuple(REGISTRY)
    assert tuple(_option("compress", "method").choices) == METHOD_NAMES
    assert HANDCRAFTED == tuple(SHAPES) and set(HANDCRAFTED) < set(METHOD_NAMES)
    assert experiments_curves.HANDCRAFTED is HANDCRAFTED
    assert set(METHOD_LABELS) == set(METHOD_NAMES)
    for command in ("sweep", "batch"):  # free-text lists: the help names exactly the registry
        assert _option(command, "methods").help.endswith(",".join(METHOD_NAMES))


def test_unknown_method_is_refused_with_the_registry_names(tmp_path, capsys):
    image, _ = _tiny_case(tmp_path)
    assert dmic_main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--methods", "hevc,bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and all(m in err for m in METHOD_NAMES)


def test_strategy_names_are_the_strategy_registry_everywhere():
    from dmic_core.experiments import tables
    from dmic_core.finetune import STRATEGY_NAMES as FINETUNE_NAMES
    from dmic_core.finetune.config import FinetuneConfig

    assert STRATEGY_NAMES == tuple(STRATEGIES) and len(STRATEGIES) == 8
    option = _option("finetune", "strategy")
    assert tuple(option.choices) == STRATEGY_NAMES and option.default == DEFAULT_STRATEGY
    assert FINETUNE_NAMES is STRATEGY_NAMES
    assert FinetuneConfig(data="x").strategy == DEFAULT_STRATEGY
    assert set(tables.PAPER_TABLE3) == set(STRATEGIES)  # the paper's numbers name the same strategies
    with pytest.raises(DmicInputError, match=", ".join(STRATEGY_NAMES)):
        FinetuneConfig(data="x", strategy="bogus")


# --- rate grids -----------------------------------------------------------------------------------

def test_one_qp_grid_and_lambda_grid_for_cli_library_and_experiments():
    from dmic_core.batch import BatchConfig
    from dmic_core.experiments.config import ExperimentConfig
    from dmic_core.methods import default_specs

    assert _option("sweep", "qps").default == list(QP_GRID)
    assert _option("sweep", "lambdas").default == list(LAMBDA_GRID)
    assert [float(q) for q in _option("batch", "qps").default.split(",")] == list(QP_GRID)
    assert [float(v) for v in _option("batch", "lambdas").default.split(",")] == list(LAMBDA_GRID)
    assert _option("experiments", "qps").default is QP_GRID
    assert _option("experiments", "lambdas").default is LAMBDA_GRID
    fields = ExperimentConfig.__dataclass_fields__
    assert fields["qps"].default is QP_GRID and fields["lambdas"].default is LAMBDA_GRID
    assert BatchConfig().qps == tuple(float(q) for q in QP_GRID)
    assert BatchConfig().lambdas == tuple(float(v) for v in LAMBDA_GRID)
    params = inspect.signature(default_specs).parameters
    assert params["qps"].default is QP_GRID and params["lambdas"].default is LAMBDA_GRID
    # the app's Compress preselection and its fine-tuned-checkpoint check are subsets of the same grids
    from dmic_core import app_actions

    assert set(APP_QPS) <= set(QP_GRID) and set(APP_LAMBDAS) <= set(LAMBDA_GRID)
    assert app_actions.COMPARISON_QPS is defaults.COMPARISON_QPS
    assert app_actions.COMPARISON_LAMBDAS is defaults.COMPARISON_LAMBDAS
    assert set(defaults.COMPARISON_QPS) <= set(QP_GRID) and set(defaults.COMPARISON_LAMBDAS) <= set(LAMBDA_GRID)


# --- windows, PSNR peak, mIoU ---------------------------------------------------------------------

def test_sample_mapping_defaults_are_the_default_windows():
    for bits in defaults.BIT_DEPTHS:
        assert SampleMapping(bits).window == defaults.default_window(bits)
    assert SampleMapping(12).window == defaults.FULL_WINDOW and SampleMapping(10).window == defaults.CCTA_WINDOW
    for command in ("encode", "compress", "sweep", "batch"):
        assert tuple(_option(command, "bit_depth").choices) == defaults.BIT_DEPTHS
    from dmic_core.agents import features

    assert features.FULL_WINDOW is defaults.FULL_WINDOW


def _window_of(result_json: Path) -> list[float]:
    payload = json.loads(result_json.read_text())
    return payload["summary"]["window_hu"] if "summary" in payload else payload["window_hu"]


def test_ten_bit_window_is_the_same_through_cli_batch_and_jobs(tmp_path):
    """Real encodes at 10 bits: ``dmic compress`` and ``dmic batch`` code the window SampleMapping names."""
    from dmic_core.jobs.tasks import _setup

    data = tmp_path / "data"
    image, label = _tiny_case(data)
    want = list(SampleMapping(10).window)
    out = tmp_path / "compress"
    assert dmic_main(["compress", str(image), "--label", str(label), "--segmenter", "gt", "--method", "hevc",
                      "--qp", "42", "--bit-depth", "10", "--out", str(out)]) == 0
    assert _window_of(out / "result.json") == want
    batch_out = tmp_path / "batch"
    assert dmic_main(["batch", str(data), "--out", str(batch_out), "--methods", "hevc", "--qps", "42",
                      "--segmenter", "gt", "--bit-depth", "10", "--workers", "1", "--no-progress"]) == 0
    (result,) = batch_out.glob("points/*/hevc_42/result.json")
    assert _window_of(result) == want
    # what a job's stored setup (page or batch) means when run
    for bits in defaults.BIT_DEPTHS:
        stored = {"bit_depth": bits, "window": list(defaults.default_window(bits))}
        assert _setup({"setup": stored}).mapping() == SampleMapping(bits)


def test_psnr_peak_is_one_value_for_real_encodes_env_and_surrogate(tmp_path):
    from dmic_core.agents.env import ClipCache, RealEnv, cache_keys
    from dmic_core.agents.spaces import ActionSpace
    from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps
    from dmic_core.evaluation import make_reference
    from dmic_core.io import load_label, load_volume
    from dmic_core.metrics import quality
    from dmic_core.pipeline import code_volume
    from dmic_core.segmentation import load_segmenter

    assert quality.PSNR_PEAK_HU is PSNR_PEAK_HU == 4095.0
    ref = np.zeros((2, 3, 4), np.int16)
    test = ref.copy()
    test[0, 0, 0] = 24
    expected = 10 * np.log10(4095.0**2 / 24.0)
    assert quality.psnr_hu(ref, test) == pytest.approx(expected, rel=1e-12)
    # the surrogate reports PSNR from summed squared errors: same peak, same number
    space = ActionSpace("one", qp_i=(30,), fg_offsets=(0,), bg_offsets=(0,))
    n, h, w = ref.shape
    rows, cols = ctu_grid_shape(h, w)
    keys = cache_keys(space, n)
    k = len(keys)
    sse = np.zeros((k, n, rows, cols))
    sse[:, 0, 0, 0] = 24.0**2
    cache = ClipCache("one", keys, np.ones((k, n)), np.ones((k, n, rows, cols), np.float32),
                      np.zeros((k, n, rows, cols), np.int32), np.zeros((k, n, rows, cols), np.int32), sse,
                      0, ref.size, 1.0, 1.0, (n, h, w))
    assert cache.evaluate(30, None, 1.0).psnr_hu == pytest.approx(expected, rel=1e-12)
    # the real environment and a real encode with the same decision report the same PSNR
    image, label_path = _tiny_case(tmp_path)
    volume = load_volume(image)
    label = load_label(label_path, like=volume)
    seg = load_segmenter("gt", label=label)
    env = RealEnv(volume, seg, label, space=space)
    outcome = env.step(30, None, 1.0)
    coded = code_volume(volume, frame_qps=dmic_frame_qps(30, volume.n_frames))
    assert outcome.psnr_hu == pytest.approx(coded.summary(volume)["psnr_hu"], rel=1e-12)
    assert make_reference(seg, volume, label).kind == "label"


def test_miou_on_empty_masks_is_one_from_every_path(tmp_path):
    """Both masks empty: mIoU 1.0 (the documented convention) from every implementation path."""
    sys.path.insert(0, str(ROOT / "bench"))
    import segment_eval

    import torch

    from dmic_core.evaluation import make_reference, task_accuracy
    from dmic_core.io import load_label, load_volume
    from dmic_core.metrics.task import miou, per_frame_scores, scores_from_counts, segmentation_scores
    from dmic_core.render import per_frame_accuracy
    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation.train import LabelledVolume, evaluate
    from dmic_core.segmentation.unet import UNet25D

    empty = np.zeros((3, 32, 32), np.uint8)
    assert miou(empty, empty) == 1.0
    assert segmentation_scores(empty, empty) == {"miou": 1.0, "vessel_iou": 1.0, "background_iou": 1.0, "dice": 1.0}
    assert scores_from_counts(0, 0, 0, empty.size)["miou"] == 1.0
    assert per_frame_scores(empty, empty)["miou"].tolist() == [1.0] * 3
    assert per_frame_accuracy(empty, empty).tolist() == [1.0] * 3  # the Compare page's per-slice curve
    assert segment_eval._pooled(0, 0, 0, empty.size)["miou"] == 1.0
    # the segmenter's validation score: a network that marks nothing on a volume without vessel
    net = UNet25D(in_slices=3, channels=(4, 8))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(-10.0)
    vol = LabelledVolume("empty", np.zeros((3, 32, 32), np.int16), empty, (1.0, 0.5, 0.5))
    assert evaluate(net, [vol], max_slices=None)["miou"] == 1.0
    # the task accuracy every sweep point, job and the agents' environment report
    image, label_path = _tiny_case(tmp_path, vessel=False)
    volume = load_volume(image)
    label = load_label(label_path, like=volume)
    seg = load_segmenter("gt", label=label)
    reference = make_reference(seg, volume, label)
    assert task_accuracy(seg, volume, reference)["miou"] == 1.0
    # surrogate counts: no reference and no predicted vessel anywhere
    from dmic_core.agents.env import ClipCache, cache_keys
    from dmic_core.agents.spaces import ActionSpace
    from dmic_core.codecs.qp import ctu_grid_shape

    space = ActionSpace("one", qp_i=(30,), fg_offsets=(0,), bg_offsets=(0,))
    n, h, w = volume.shape
    rows, cols = ctu_grid_shape(h, w)
    keys = cache_keys(space, n)
    shape = (len(keys), n, rows, cols)
    cache = ClipCache("one", keys, np.ones(shape[:2]), np.ones(shape, np.float32), np.zeros(shape, np.int32),
                      np.zeros(shape, np.int32), np.zeros(shape), 0, volume.hu.size, 1.0, 1.0, (n, h, w))
    assert cache.evaluate(30, None, 1.0).miou == 1.0


# --- agent checkpoints ----------------------------------------------------------------------------

def test_default_agents_are_one_checkpoint():
    from dmic_core.agents.inference import default_agents_path, pretrained_agents_path
    from dmic_core.assets import SHIPPED_AGENTS, shipped_agents
    from dmic_core.finetune.config import default_pretrained

    assert default_agents_path().name == DEFAULT_AGENTS
    assert pretrained_agents_path().name == PRETRAINED_AGENTS == default_pretrained().name
    assert shipped_agents()[0][0] == DEFAULT_AGENTS and shipped_agents()[0][2].endswith("(default)")
    assert {DEFAULT_AGENTS, PRETRAINED_AGENTS} <= set(SHIPPED_AGENTS)


def test_missing_default_agents_fail_naming_them_without_fallback(tmp_path, monkeypatch, capsys):
    """Only the pretrained agents present: DMIC must refuse, not quietly decide with them."""
    from dmic_core import assets
    from dmic_core.batch import BatchConfig
    from dmic_core.batch.plan import validate

    shutil.copy(assets.ASSETS_DIR / PRETRAINED_AGENTS, tmp_path / PRETRAINED_AGENTS)
    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    image, label = _tiny_case(tmp_path / "data")
    code = dmic_main(["compress", str(image), "--label", str(label), "--segmenter", "gt", "--method", "dmic",
                      "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and DEFAULT_AGENTS in err and "\n" not in err.strip()
    assert not (tmp_path / "out" / "result.json").exists()
    with pytest.raises(DmicInputError, match=DEFAULT_AGENTS):
        validate(BatchConfig(methods=("dmic",), segmenter="gt"), [], tmp_path)


# --- the app's pages ------------------------------------------------------------------------------

@pytest.fixture
def app(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "ws_root"
    ws_id = uuid.uuid4().hex
    image, label = _tiny_case(root / ws_id / "uploads" / "x")
    (root / ws_id / "current.json").write_text(json.dumps({"image": str(image), "label": str(label), "name": "tiny",
                                                            "label_name": "tiny label"}))
    monkeypatch.setenv("DMIC_WORKSPACE_ROOT", str(root))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["ws"] = ws_id
    yield at, root, ws_id
    from dmic_core.jobs import stop_runner

    stop_runner(root / "_jobs")


def test_compress_page_reads_the_grids_agents_and_window(app):
    from dmic_core.jobs import JobStore
    from dmic_core.jobs.tasks import _setup

    at, root, ws_id = app
    at.switch_page("pages/compress.py").run()
    assert not at.exception, at.exception
    qps, lambdas = at.multiselect(key="cmp_qps"), at.multiselect(key="cmp_lambdas")
    assert [float(q) for q in qps.options] == [float(q) for q in QP_GRID] and qps.value == list(APP_QPS)
    assert [float(v) for v in lambdas.options] == list(LAMBDA_GRID) and lambdas.value == list(APP_LAMBDAS)
    assert at.selectbox(key="cmp_agents").options[0].startswith(DEFAULT_AGENTS)
    assert set(at.multiselect(key="cmp_methods").options) <= set(METHOD_NAMES)
    at.multiselect(key="cmp_methods").set_value(["hevc"])
    at.multiselect(key="cmp_qps").set_value([42])
    at.selectbox(key="cmp_segmenter").set_value("gt")
    at.selectbox(key="cmp_bit_depth").set_value(10)
    at.button[0].click().run()
    assert not at.exception, at.exception
    store = JobStore(root / "_jobs")
    job = store.jobs(ws_id)[0]
    (task,) = store.tasks(job["id"])
    store.cancel_job(job["id"])
    assert _setup(task["params"]).mapping() == SampleMapping(10)


def test_finetune_and_upload_pages_list_the_registries(app):
    at, _, _ = app
    at.switch_page("pages/finetune.py").run()
    assert not at.exception, at.exception
    strategy = at.selectbox(key="ft_strategy")
    assert strategy.options == list(STRATEGY_NAMES)  # short names (no cut-off labels), summaries in the help
    assert all(STRATEGIES[s].summary in strategy.help for s in STRATEGY_NAMES)
    assert strategy.value == DEFAULT_STRATEGY
    at.switch_page("pages/upload.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="up_ctu_kind").options == ["off", "two-level", *HANDCRAFTED]


# --- shared data and machine paths ----------------------------------------------------------------

def test_shared_data_dir_honours_the_setting(monkeypatch, tmp_path):
    monkeypatch.delenv(defaults.SHARED_DATA_ENV, raising=False)
    assert defaults.shared_data_dir() == ROOT.parent / "shared" / "data"
    monkeypatch.setenv(defaults.SHARED_DATA_ENV, str(tmp_path))
    assert defaults.shared_data_dir() == tmp_path
    assert defaults.repo_relative(ROOT / "work_dirs" / "x") == "work_dirs/x"
    assert defaults.repo_relative(ROOT.parent / "shared" / "data" / "ct.nii.gz") == "../shared/data/ct.nii.gz"


def test_experiments_record_repository_relative_paths():
    from dmic_core.experiments import _portable_config
    from dmic_core.experiments.config import DEFAULT_WORK_DIR, ExperimentConfig

    assert DEFAULT_WORK_DIR.is_absolute()
    config = _portable_config(ExperimentConfig(data=str(ROOT / "work_dirs" / "d"), out="o",
                                               extra_volumes=(str(ROOT.parent / "shared" / "data" / "ct.nii.gz"),)))
    assert config["work_dir"] == "work_dirs/experiments" and config["data"] == "work_dirs/d"
    assert config["extra_volumes"] == ["../shared/data/ct.nii.gz"]


def test_committed_files_name_no_machine_paths():
    """Results, model cards, docs and code name shared data repository-relative (``../shared/data``)."""
    import re
    import subprocess

    pattern = re.compile(r"(?<![\w.~])/(?:work|root|home)/\w")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    offenders = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".json", ".csv", ".toml", ".sh", ".txt", ".cfg"} or \
                name == "tests/test_single_source.py" or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)
