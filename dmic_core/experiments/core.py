"""The paper's experiments on our data: train the checkpoints the tables need, evaluate them with
real encodes on held-out test volumes, and pool the curves.

Every number comes from :func:`dmic_core.sweep.run_point` (real x265 encode and decode, the real
segmenter, :func:`dmic_core.evaluation.task_accuracy`) on test volumes that no tuning run saw;
the surrogate only ever trains. Points are kept in a JSONL store per test case
(``work_dir/points``), keyed by (curve, setting, checkpoint hash), so an interrupted or repeated
run only computes what is missing and the tables share their points.

Test volumes are ``slab``-slice slabs through the heart (the paper codes 33 frames), the first
``test_cases`` of the split's 10 test volumes. BD numbers are computed on the *pooled* curve (the
mean bpp and the mean mIoU over test volumes at each setting; anchor: constant-QP HEVC) after
:func:`~dmic_core.metrics.bd.upper_envelope`, as :func:`dmic_core.sweep.bd_table` does; the
per-volume BD mean is reported beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.agents.strategies import STRATEGY_NAMES
from dmic_core.defaults import LAMBDA_GRID, QP_GRID
from dmic_core.finetune.data import SLAB_FRAMES, file_fingerprint, heart_slab
from dmic_core.finetune.tune import DEFAULT_CACHE_DIR, FinetuneConfig, clip_specs, make_split

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORK_DIR = ROOT / "work_dirs" / "experiments"
TABLES = ("table1", "table2", "table3", "table4", "fig2")


def _spawn():
    """Worker processes are spawned: forking a parent whose torch thread pool is running can hang."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


Log = Callable[[str], None]


@dataclass
class ExperimentConfig:
    """What the tables are computed on and how much is spent.

    Attributes:
        data: labelled target dataset (ImageCAS layout or CSV), split K:10:10 with ``split_seed``.
        extra_volumes: further (unlabelled, e.g. real CT) volumes on which Table I, IV and Fig. 2a
            are also measured; reference = segmentation of the original.
        test_cases: how many of the split's test volumes are evaluated.
        iterations: tuning iterations of the main run (Table I, IV, Fig. 2a: a2c, 1 shot);
            ``variant_iterations``: of the ablations (Table II's shots x {a2c, full}, Table III's
            variants, Fig. 2b/c); equal to ``iterations`` unless the budget asks otherwise.
        ablation_cases: how many of the test volumes the ablation curves are evaluated on
            (default: all ``test_cases``); Table I/IV and Fig. 2a use all of them.
    """

    data: str
    out: str
    work_dir: str = str(DEFAULT_WORK_DIR)
    extra_volumes: tuple[str, ...] = ()
    split_seed: int = 0
    shots: tuple[int, ...] = (1, 3, 5)
    iterations: int = 1000
    variant_iterations: int = 1000
    test_cases: int = 3
    ablation_cases: int | None = None
    slab: int = SLAB_FRAMES
    qps: tuple[float, ...] = QP_GRID
    lambdas: tuple[float, ...] = LAMBDA_GRID
    workers: int = 2
    train_workers: int = 2
    pretrained: str | None = None
    segmenter: str = "builtin"
    clip_frames: int = 9
    clips_per_volume: int = 2
    preset: str | None = "veryfast"
    seed: int = 0
    cache_dir: str = str(DEFAULT_CACHE_DIR)

    def finetune_config(self, strategy: str, shots: int, iterations: int) -> FinetuneConfig:
        return FinetuneConfig(data=self.data, shots=shots, strategy=strategy, iterations=iterations,
                              pretrained=self.pretrained, split_seed=self.split_seed, seed=self.seed,
                              clip_frames=self.clip_frames, clips_per_volume=self.clips_per_volume,
                              slab=self.slab, preset=self.preset, segmenter=self.segmenter, workers=self.workers,
                              threads=1, cache_dir=self.cache_dir)


@dataclass(frozen=True)
class RunSpec:
    """A tuning run a table needs."""

    strategy: str
    shots: int
    iterations: int

    @property
    def name(self) -> str:
        return f"{self.strategy}-k{self.shots}-it{self.iterations}"


@dataclass
class TestCase:
    case_id: str
    image: str
    label: str | None
    slices: tuple[int, int]
    domain: str

    @property
    def tag(self) -> str:
        return f"{self.case_id}-{self.slices[0]}-{self.slices[1]}"


@dataclass
class Curve:
    """One rate curve: a sweep method at its settings (dmic: with a checkpoint)."""

    name: str
    method: str
    settings: tuple[float, ...]
    checkpoint: str | None = None
    run: RunSpec | None = None


# --- what each table needs ----------------------------------------------------------------------------

def needed_runs(tables: Iterable[str], cfg: ExperimentConfig) -> list[RunSpec]:
    runs: list[RunSpec] = []
    for t in tables:
        if t in ("table1", "table4"):
            runs.append(RunSpec("a2c", 1, cfg.iterations))
        if t in ("table2", "fig2"):
            runs += [RunSpec(s, k, cfg.variant_iterations) for s in ("a2c", "full") for k in cfg.shots]
        if t in ("table3", "fig2"):
            runs += [RunSpec(s, 1, cfg.variant_iterations) for s in STRATEGY_NAMES if s != "pretrained"]
    return list(dict.fromkeys(runs))


def checkpoint_path(cfg: ExperimentConfig, run: RunSpec) -> Path:
    return Path(cfg.work_dir) / "checkpoints" / f"s{cfg.split_seed}" / f"{run.name}.pt"


def pretrained_path(cfg: ExperimentConfig) -> Path:
    from dmic_core.finetune.tune import default_pretrained

    return Path(cfg.pretrained) if cfg.pretrained else default_pretrained()


def run_complete(path: Path, iterations: int) -> bool:
    if not path.is_file():
        return False
    import torch

    meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
    return int(meta.get("iterations_done", -1)) >= iterations


def _train_one(cfg_dict: dict[str, Any], run: tuple[str, int, int], out: str, log_path: str) -> dict[str, Any]:
    """Worker: one tuning run (resumable), its log in ``log_path``."""
    import torch

    from dmic_core.finetune.tune import finetune

    torch.set_num_threads(1)
    cfg = ExperimentConfig(**cfg_dict)
    ft = cfg.finetune_config(*run)
    with open(log_path, "a") as fh:
        def log(msg: str) -> None:
            fh.write(msg + "\n")
            fh.flush()

        result = finetune(ft, out, resume=True, log=log)
    return result.to_dict()


def _lock_path(cfg: ExperimentConfig, run: RunSpec) -> Path:
    return checkpoint_path(cfg, run).with_suffix(".lock")


def _take_lock(path: Path) -> bool:
    """Claim a run for this process (another live process holding it keeps it)."""
    from dmic_core.finetune.background import alive

    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and alive(pid):
                return False
            path.unlink(missing_ok=True)  # stale lock of a dead process
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def run_priority(run: RunSpec, cfg: ExperimentConfig) -> tuple:
    """Training order: the main result (a2c, 1 shot) first, then by shots, cheapest first."""
    main = run == RunSpec("a2c", 1, cfg.iterations)
    cost = run.shots * run.iterations * (2 if run.strategy in ("full", "a2c_fc") else 1)
    return (not main, run.shots, cost)


def train_runs(cfg: ExperimentConfig, runs: Sequence[RunSpec], log: Log = print) -> dict[str, dict[str, Any]]:
    """Make sure every run's checkpoint exists: build the shared caches once, then train the
    missing runs in ``cfg.train_workers`` processes (one torch thread each). A run another live
    process is training (its ``.lock``) is waited for instead of trained twice."""
    from dmic_core.finetune.tune import build_caches

    todo = [r for r in runs if not run_complete(checkpoint_path(cfg, r), r.iterations)]
    results: dict[str, dict[str, Any]] = {}
    if not todo:
        return results
    k_max = max(r.shots for r in todo)
    ft = cfg.finetune_config("a2c", k_max, 0)
    split, cases = make_split(ft)
    t0 = time.perf_counter()
    build_caches(clip_specs(ft, split, cases), ft, log=log)
    todo.sort(key=lambda r: run_priority(r, cfg))
    mine = [r for r in todo if _take_lock(_lock_path(cfg, r))]
    others = [r for r in todo if r not in mine]
    log(f"[experiments] caches ready in {time.perf_counter() - t0:.0f} s; training {len(mine)} run(s): "
        + ", ".join(r.name for r in mine) + (f"; waiting for {', '.join(r.name for r in others)} (another process)"
                                             if others else ""))
    log_dir = Path(cfg.work_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if mine:
            with ProcessPoolExecutor(mp_context=_spawn(), max_workers=max(1, min(cfg.train_workers, len(mine)))) as pool:
                futs = {pool.submit(_train_one, asdict(cfg), (r.strategy, r.shots, r.iterations),
                                    str(checkpoint_path(cfg, r)), str(log_dir / f"{r.name}.log")): r for r in mine}
                for fut in as_completed(futs):
                    r = futs[fut]
                    res = fut.result()
                    results[r.name] = res
                    _lock_path(cfg, r).unlink(missing_ok=True)
                    log(f"[experiments] trained {r.name}: {res['status']} at {res['iteration']} it, "
                        f"{res['trainable_parameters']} trainable, {res['seconds'].get('train', 0):.0f} s training")
    finally:
        for r in mine:
            lock = _lock_path(cfg, r)
            if lock.is_file() and lock.read_text().strip() == str(os.getpid()):
                lock.unlink(missing_ok=True)
    for r in others:
        while not run_complete(checkpoint_path(cfg, r), r.iterations):
            if not _lock_path(cfg, r).is_file():
                raise RuntimeError(f"run {r.name} was abandoned by the process training it; run again to train it")
            time.sleep(10)
    return results


# --- test cases ---------------------------------------------------------------------------------------

def test_cases(cfg: ExperimentConfig, log: Log = print) -> list[TestCase]:
    """The first ``cfg.test_cases`` test volumes of the split (heart slabs), then the extra volumes."""
    from dmic_core.io import load_label, load_volume

    split, cases = make_split(cfg.finetune_config("a2c", max(cfg.shots), 0))
    out = []
    n_ablation = cfg.test_cases if cfg.ablation_cases is None else cfg.ablation_cases
    for i, cid in enumerate(split.test[:cfg.test_cases]):
        image, label = cases[cid]
        vol = load_volume(image)
        lab = load_label(label, like=vol) if label else np.ones(vol.shape, np.uint8)
        out.append(TestCase(cid, image, label, heart_slab(lab, cfg.slab), "target" if i < n_ablation else "target-main"))
    for path in cfg.extra_volumes:
        vol = load_volume(path)
        slices = (0, vol.n_frames)
        if vol.n_frames > cfg.slab:
            from dmic_core.segmentation import load_segmenter

            roi = load_segmenter(cfg.segmenter).segment(vol)
            slices = heart_slab(roi, cfg.slab)
        name = Path(path).name.split(".")[0]
        parent = Path(path).parent.name
        out.append(TestCase(f"{parent}-{name}", str(path), None, slices, "real"))
    return out


def curves_for(tables: Iterable[str], cfg: ExperimentConfig, domain: str) -> list[Curve]:
    """The curves the tables need on a test case of ``domain`` (``target`` or ``real``)."""
    tables = set(tables)
    qps, lams = tuple(cfg.qps), tuple(cfg.lambdas)
    curves = [Curve("hevc", "hevc", qps)]
    if tables & {"table1"}:
        curves.append(Curve("ratecontrol", "ratecontrol", qps))
    if tables & {"fig2"} and domain != "target-main":  # Fig. 2a's hand-crafted curves: ablation volumes only
        from dmic_core.codecs.qp import PAPER_QP_I_MAX, PAPER_QP_I_MIN

        hc = tuple(sorted({float(np.clip(q, PAPER_QP_I_MIN, PAPER_QP_I_MAX)) for q in qps}))
        curves += [Curve(h, h, hc) for h in HANDCRAFTED]
    curves.append(Curve("pretrained", "dmic", lams, str(pretrained_path(cfg)), None))
    runs: list[RunSpec] = []
    if tables & {"table1", "table4", "fig2"}:
        runs.append(RunSpec("a2c", 1, cfg.iterations))
    if domain == "target":  # "target-main": a test volume beyond cfg.ablation_cases (main curves only)
        runs += [r for r in needed_runs(tables & {"table2", "table3", "fig2"}, cfg)]
    for r in dict.fromkeys(runs):
        curves.append(Curve(f"dmic:{r.name}", "dmic", lams, str(checkpoint_path(cfg, r)), r))
    return list({c.name: c for c in curves}.values())


# --- points --------------------------------------------------------------------------------------------

def _ckpt_id(path: str | None) -> str:
    return "" if not path else file_fingerprint(path, full=True)


class PointStore:
    """Evaluated points of one test case (JSONL, append-only; the last row of a key wins)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[tuple[str, float, str], dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                self.rows[(row["curve"], float(row["setting"]), row.get("checkpoint_id", ""))] = row

    def get(self, curve: str, setting: float, ckpt: str) -> dict[str, Any] | None:
        return self.rows.get((curve, float(setting), ckpt))

    def add(self, row: dict[str, Any]) -> None:
        self.rows[(row["curve"], float(row["setting"]), row.get("checkpoint_id", ""))] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")


def _run_spec(spec, setup, options):
    from dmic_core.sweep import _run_in_worker

    return _run_in_worker(spec, setup, options)


def evaluate_case(case: TestCase, curves: Sequence[Curve], cfg: ExperimentConfig, log: Log = print) -> pd.DataFrame:
    """Every (curve, setting) point of ``case`` by real encodes, computing only what the store lacks."""
    from dmic_core.pipeline import TASK_CODING
    from dmic_core.sweep import PointSpec, _init_worker

    seg_id = hashlib.sha1(cfg.segmenter.encode()).hexdigest()[:6]
    if cfg.segmenter == "builtin":
        from dmic_core.finetune.data import segmenter_fingerprint

        seg_id = segmenter_fingerprint("builtin")[-10:]
    store = PointStore(Path(cfg.work_dir) / "points" / f"{case.tag}-{seg_id}.jsonl")
    ids = {c.name: _ckpt_id(c.checkpoint) for c in curves}
    missing = [(c, s) for c in curves for s in c.settings if store.get(c.name, s, ids[c.name]) is None]
    if missing:
        log(f"[experiments] {case.case_id} [{case.slices[0]}:{case.slices[1]}]: {len(missing)} point(s) to encode "
            f"({sum(len(c.settings) for c in curves) - len(missing)} stored)")
        t0 = time.perf_counter()
        done = 0
        with ProcessPoolExecutor(mp_context=_spawn(), max_workers=max(1, cfg.workers), initializer=_init_worker,
                                 initargs=(case.image, case.label, cfg.segmenter, tuple(case.slices))) as pool:
            first = [(c, s) for c, s in missing if c.method == "hevc"]
            rest = [(c, s) for c, s in missing if c.method != "hevc"]
            for batch in (first, rest):
                futs = {}
                for c, s in batch:
                    options: dict[str, Any] = {}
                    if c.method == "dmic":
                        options["agents"] = c.checkpoint
                    if c.method == "ratecontrol":
                        anchor = store.get("hevc", s, "")
                        if anchor is not None:
                            options["anchor_bits"] = anchor["bits"]
                    futs[pool.submit(_run_spec, PointSpec(c.method, float(s)), TASK_CODING, options)] = (c, s)
                for fut in as_completed(futs):
                    c, s = futs[fut]
                    res = fut.result()
                    row = {"case": case.case_id, "domain": case.domain, "slices": list(case.slices),
                           "curve": c.name, "checkpoint_id": ids[c.name], **res.row(),
                           "qp_i": res.extra.get("qp_i"), "agent_seconds": res.extra.get("agent_seconds")}
                    store.add(row)
                    done += 1
                    el = time.perf_counter() - t0
                    if done % 5 == 0 or done == len(missing):
                        log(f"[experiments]   {case.case_id}: {done}/{len(missing)} points, "
                            f"ETA {el / done * (len(missing) - done) / 60:.1f} min")
    rows = [store.get(c.name, s, ids[c.name]) for c in curves for s in c.settings]
    frame = pd.DataFrame([r for r in rows if r is not None])
    return frame


def evaluate(tables: Sequence[str], cfg: ExperimentConfig, log: Log = print) -> pd.DataFrame:
    """Train what is missing, then evaluate every test case; all points in one frame."""
    train_runs(cfg, needed_runs(tables, cfg), log)
    frames = []
    for case in test_cases(cfg, log):
        frame = evaluate_case(case, curves_for(tables, cfg, case.domain), cfg, log)
        frames.append(frame.assign(domain="target") if case.domain == "target-main" else frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- pooling and BD ------------------------------------------------------------------------------------

def pooled_curves(points: pd.DataFrame) -> pd.DataFrame:
    """Mean bpp / mIoU / PSNR per (curve, setting) over the test volumes that curve was evaluated
    on (settings missing on one of them are dropped); ``cases`` says how many."""
    frames = []
    for curve, grp in points.groupby("curve", sort=False):
        n = grp.case.nunique()
        g = grp.groupby("setting").agg(bpp=("bpp", "mean"), miou=("miou", "mean"), psnr_hu=("psnr_hu", "mean"),
                                       dice=("dice", "mean"), bits=("bits", "mean"),
                                       cases=("case", "nunique")).reset_index()
        g = g[g.cases == n]
        frames.append(g.assign(curve=curve, method=curve))
    cols = ["curve", "setting", "bpp", "miou", "psnr_hu", "dice", "bits", "cases", "method"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def rate_diff_equal_quality(anchor: pd.DataFrame, test: pd.DataFrame) -> tuple[float, int]:
    """Mean rate difference (%) of the test curve's points against the anchor at *equal mIoU*.

    For every point of the test curve's upper envelope whose mIoU lies inside the anchor's
    envelope range: ``100 (bpp / bpp_anchor(mIoU) - 1)``, ``log bpp_anchor`` interpolated linearly in
    mIoU between the anchor's points. This is BD-rate's integrand sampled at the test points; unlike
    BD it is defined for curves with fewer than four distinct points (agents whose decisions
    collapse onto a few QPs). Returns (value, points used); NaN when no point is in range.
    """
    from dmic_core.metrics.bd import upper_envelope

    ar, aq = upper_envelope(anchor.bpp.values, anchor.miou.values)
    tr, tq = upper_envelope(test.bpp.values, test.miou.values)
    if len(ar) < 2 or not len(tr):
        return float("nan"), 0
    inside = (tq >= aq.min()) & (tq <= aq.max())
    if not inside.any():
        return float("nan"), 0
    log_ref = np.interp(tq[inside], aq, np.log(ar))
    return float(np.mean(100.0 * (tr[inside] / np.exp(log_ref) - 1.0))), int(inside.sum())


def bd_rows(points: pd.DataFrame, curves: Sequence[str]) -> pd.DataFrame:
    """BD-rate / BD-mIoU of ``curves`` against ``hevc``: pooled curve, and per-case mean."""
    from dmic_core.sweep import bd_table

    out = []
    for name in curves:
        row: dict[str, Any] = {"curve": name}
        # pool over the test volumes this curve was evaluated on (the anchor on the same volumes)
        on = points[points.curve == name].case.unique()
        sub = points[points.case.isin(on) & points.curve.isin(["hevc", name])]
        pooled = pooled_curves(sub) if len(sub) else sub
        table = bd_table(pooled) if len(pooled) else pd.DataFrame()
        hit = table[table.method == name] if not table.empty else table
        if len(hit):
            h = hit.iloc[0]
            row.update(bd_rate_pct=h.bd_rate_pct, bd_miou_pp=h.bd_miou_pp,
                       bd_rate_psnr_pct=h.bd_rate_psnr_pct, reason=h.reason if isinstance(h.reason, str) else "")
        else:
            row.update(bd_rate_pct=float("nan"), bd_miou_pp=float("nan"), bd_rate_psnr_pct=float("nan"),
                       reason="no points for this curve")
        if len(pooled):
            row["dr_eq_miou_pct"], row["dr_points"] = rate_diff_equal_quality(
                pooled[pooled.curve == "hevc"], pooled[pooled.curve == name])
        else:
            row["dr_eq_miou_pct"], row["dr_points"] = float("nan"), 0
        row["distinct_points"] = int(len(pooled[pooled.curve == name].drop_duplicates(["bpp", "miou"]))) if len(pooled) else 0
        per_case = []
        reasons = []
        for case, grp in points.groupby("case"):
            t = bd_table(grp[grp.curve.isin(["hevc", name])].assign(method=lambda d: d.curve))
            if t.empty:
                continue
            v = float(t.iloc[0].bd_rate_pct)
            if np.isfinite(v):
                per_case.append(v)
            elif isinstance(t.iloc[0].reason, str):
                reasons.append(f"{case}: {t.iloc[0].reason}")
        row["bd_rate_pct_case_mean"] = float(np.mean(per_case)) if per_case else float("nan")
        row["cases_with_bd"] = len(per_case)
        row["cases"] = int(len(on))
        if not np.isfinite(row["bd_rate_pct"]) and not row["reason"]:
            row["reason"] = "; ".join(reasons) or "BD undefined"
        out.append(row)
    return pd.DataFrame(out)


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    import torch

    return dict(torch.load(Path(path), map_location="cpu", weights_only=True).get("meta", {}))


def parameter_counts(path: str | Path) -> tuple[int, int]:
    """(trainable, total) parameters recorded in a checkpoint (pretrained: 0 trainable)."""
    meta = checkpoint_meta(path)
    if "trainable_parameters" in meta and meta.get("kind") == "finetuned":
        return int(meta["trainable_parameters"]), int(meta.get("total_parameters", 0))
    from dmic_core.agents.dmic import DMICAgents

    agents = DMICAgents.load(path)
    return 0, sum(p.numel() for p in agents.parameters())
