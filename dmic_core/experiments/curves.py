"""The experiments' points: the test cases, the curves each table needs, and their real encodes.

Every number comes from :func:`dmic_core.runs.run_points` (real x265 encode and decode, the real
segmenter, :func:`dmic_core.evaluation.task_accuracy`) on test volumes that no tuning run saw;
the surrogate only ever trains. Points are kept in a :class:`~dmic_core.runs.PointLog` per test
case (``work_dir/points``), keyed by (curve, setting, checkpoint hash), so an interrupted or
repeated run only computes what is missing and the tables share their points.

Test volumes are ``slab``-slice slabs through the heart (the paper codes 33 frames), the first
``test_cases`` of the split's 10 test volumes. BD numbers are computed on the *pooled* curve
(:func:`dmic_core.evaluation.bd.bd_rows`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.evaluation.points import PointResult
from dmic_core.experiments.config import Curve, ExperimentConfig, Log, RunSpec, TestCase
from dmic_core.experiments.training import checkpoint_path, needed_runs, pretrained_path, train_runs
from dmic_core.finetune.config import make_split
from dmic_core.finetune.data import file_fingerprint, heart_slab, segmenter_fingerprint
from dmic_core.methods import PointSpec, settings_for
from dmic_core.pipeline import TASK_CODING
from dmic_core.runs import CaseSpec, PointJob, PointLog, run_points


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
        curves += [Curve(h, h, tuple(settings_for(h, qps))) for h in HANDCRAFTED]
    curves.append(Curve("pretrained", "dmic", lams, str(pretrained_path(cfg)), None))
    runs: list[RunSpec] = []
    if tables & {"table1", "table4", "fig2"}:
        runs.append(RunSpec("a2c", 1, cfg.iterations))
    if domain == "target":  # "target-main": a test volume beyond cfg.ablation_cases (main curves only)
        runs += [r for r in needed_runs(tables & {"table2", "table3", "fig2"}, cfg)]
    for r in dict.fromkeys(runs):
        curves.append(Curve(f"dmic:{r.name}", "dmic", lams, str(checkpoint_path(cfg, r)), r))
    return list({c.name: c for c in curves}.values())


def _ckpt_id(path: str | None) -> str:
    return "" if not path else file_fingerprint(path, full=True)


def _point_key(row: dict[str, Any]) -> tuple[str, float, str]:
    return row["curve"], float(row["setting"]), row.get("checkpoint_id", "")


def point_log(case: TestCase, cfg: ExperimentConfig) -> PointLog:
    """The case's stored points (``work_dir/points/<case tag>-<segmenter id>.jsonl``), keyed by
    (curve, setting, checkpoint hash)."""
    seg_id = hashlib.sha1(cfg.segmenter.encode()).hexdigest()[:6]
    if cfg.segmenter == "builtin":
        seg_id = segmenter_fingerprint("builtin")[-10:]
    engine = "" if cfg.codec == TASK_CODING.codec else f"-{cfg.codec}"  # x265 logs keep their names
    return PointLog(Path(cfg.work_dir) / "points" / f"{case.tag}-{seg_id}{engine}.jsonl", _point_key)


def evaluate_case(case: TestCase, curves: Sequence[Curve], cfg: ExperimentConfig, log: Log = print) -> pd.DataFrame:
    """Every (curve, setting) point of ``case`` by real encodes (:func:`dmic_core.runs.run_points`),
    computing only what the case's point log lacks."""
    store = point_log(case, cfg)
    ids = {c.name: _ckpt_id(c.checkpoint) for c in curves}
    volume = CaseSpec(case.image, case.label, cfg.segmenter, tuple(case.slices))
    missing = [PointJob(volume, PointSpec(c.method, float(s)), {"agents": c.checkpoint} if c.method == "dmic" else {},
                        c.name)
               for c in curves for s in c.settings if (c.name, float(s), ids[c.name]) not in store]
    if missing:
        log(f"[experiments] {case.case_id} [{case.slices[0]}:{case.slices[1]}]: {len(missing)} point(s) to encode "
            f"({sum(len(c.settings) for c in curves) - len(missing)} stored)")
        t0 = time.perf_counter()

        def on_point(job: PointJob, res: PointResult, done: int, total: int) -> None:
            store.add({"case": case.case_id, "domain": case.domain, "slices": list(case.slices), "curve": job.name,
                       "checkpoint_id": ids[job.name], **res.row(), "qp_i": res.extra.get("qp_i"),
                       "agent_seconds": res.extra.get("agent_seconds")})
            if done % 5 == 0 or done == total:
                el = time.perf_counter() - t0
                log(f"[experiments]   {case.case_id}: {done}/{total} points, "
                    f"ETA {el / done * (total - done) / 60:.1f} min")

        anchors = {(volume, float(r["setting"])): r["bits"] for r in store if r["curve"] == "hevc"
                   and r.get("checkpoint_id", "") == ""}
        run_points(missing, setup=replace(TASK_CODING, codec=cfg.codec), workers=max(1, cfg.workers),
                   on_point=on_point, anchor_bits=anchors)
    rows = [store.get((c.name, float(s), ids[c.name])) for c in curves for s in c.settings]
    return pd.DataFrame([r for r in rows if r is not None])


def evaluate(tables: Sequence[str], cfg: ExperimentConfig, log: Log = print) -> pd.DataFrame:
    """Train what is missing, then evaluate every test case; all points in one frame."""
    train_runs(cfg, needed_runs(tables, cfg), log)
    frames = []
    for case in test_cases(cfg, log):
        frame = evaluate_case(case, curves_for(tables, cfg, case.domain), cfg, log)
        frames.append(frame.assign(domain="target") if case.domain == "target-main" else frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
