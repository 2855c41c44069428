"""The agents' evaluation protocol: every method on the reserved evaluation volumes, resumably.

One command (``dmic evaluate``) runs, on :func:`~dmic_core.protocol.volumes.evaluation_volumes`,
the constant-QP anchor (``hevc``), x265 rate control, the five hand-crafted maps, ``gop8``,
every shipped agents checkpoint (a curve ``dmic:<file stem>`` each) and, on every labelled
volume (or the first ``oracle_volumes``), the ground-truth oracles of the paper's and the
extended action space. Every point is
a real encode with the project's coding setup, a real decode and a real segmentation; points
are appended to ``WORK/<fingerprint>/points.jsonl`` as they finish (:func:`fingerprint`: the
segmenter, the coding setup and the x265 build; each row also keys its agents checkpoint's
hash), so a rerun does only what is missing and never mixes numbers of other models.
:mod:`dmic_core.protocol.summary` turns the points into the tables.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.defaults import DEFAULT_AGENTS, EVALUATION_LAMBDAS, EVALUATION_QP_IS, EVALUATION_QPS
from dmic_core.evaluation.offsets import OFFSET_KEYS, offset_summary
from dmic_core.methods.base import PointSpec
from dmic_core.methods.registry import ANCHOR
from dmic_core.protocol.methods import (GOP8, ON_LABEL, ORACLE, ORACLE_BG, ORACLE_EXTENDED, ORACLE_EXTENDED_BG,
                                       ORACLE_FG, PROTOCOL_DECIDERS, TWO_LEVEL, TWO_LEVEL_EXT)
from dmic_core.protocol.volumes import EvaluationVolume
from dmic_core.runs import PointJob, PointLog, run_points

#: Methods that take a QP (anchors) and a QP_I (rules), before the agents' curves.
QP_METHODS: tuple[str, ...] = (ANCHOR, "ratecontrol")
QP_I_METHODS: tuple[str, ...] = (*HANDCRAFTED, GOP8, TWO_LEVEL, TWO_LEVEL_EXT)
#: The agents' curves (one per checkpoint of :attr:`ProtocolPlan.agents`).
AGENTS = "dmic"
#: The default agents given the ground-truth label as their mask instead of the segmenter's (on
#: labelled volumes; curve ``<agents curve>`` + :data:`ON_LABEL`): what a perfect vessel model would
#: give the shipped agents. Like the oracles, it needs the label, so it is a bound, not a method.
AGENTS_ON_LABEL = "dmic_on_label"
ALL_METHODS: tuple[str, ...] = (*QP_METHODS, *QP_I_METHODS, AGENTS, AGENTS_ON_LABEL, ORACLE, ORACLE_EXTENDED)


def agents_curve(name: str) -> str:
    """The protocol's curve name of an agents checkpoint: ``dmic:<name>`` (a file's stem)."""
    return f"{AGENTS}:{name}"


#: Curve of the default agents (:data:`~dmic_core.defaults.DEFAULT_AGENTS`).
DEFAULT_AGENTS_CURVE = agents_curve(Path(DEFAULT_AGENTS).stem)


def shipped_agents() -> dict[str, str]:
    """``dmic:<stem>`` -> path of every shipped agents checkpoint."""
    from dmic_core.assets import ASSETS_DIR, SHIPPED_AGENTS

    return {agents_curve(Path(name).stem): str(ASSETS_DIR / name) for name in SHIPPED_AGENTS
            if (ASSETS_DIR / name).is_file()}


@dataclass
class ProtocolPlan:
    """What one protocol run covers."""

    volumes: list[EvaluationVolume]
    agents: dict[str, str] = field(default_factory=shipped_agents)
    qps: Sequence[float] = EVALUATION_QPS
    qp_is: Sequence[float] = EVALUATION_QP_IS
    lambdas: Sequence[float] = EVALUATION_LAMBDAS
    #: labelled volumes (in order) the oracles run on; None: all of them
    oracle_volumes: int | None = None
    methods: Sequence[str] = ALL_METHODS
    #: the diagnosis model: it finds the region the methods protect and scores every decode (a named
    #: built-in segmenter; its weights key the point log, :func:`fingerprint`)
    segmenter: str = "builtin"

    def __post_init__(self) -> None:
        from dmic_core.segmentation.config import NAMED_WEIGHTS

        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ValueError(f"unknown protocol methods {unknown}; known: {', '.join(ALL_METHODS)}")
        if self.segmenter not in NAMED_WEIGHTS:
            raise ValueError(f"unknown protocol segmenter {self.segmenter!r}; known: {', '.join(NAMED_WEIGHTS)}")

    def case_of(self, volume: EvaluationVolume):
        """The runner's case of ``volume`` under this plan's segmenter."""
        return volume.case_spec(self.segmenter)

    def jobs(self) -> list[PointJob]:
        """Every point of the plan, volume by volume (``dmic`` and ``oracle`` in :attr:`methods`
        switch the agents' curves and the oracle on)."""
        jobs: list[PointJob] = []
        labelled = [v for v in self.volumes if v.label is not None]
        oracle_names = {v.name for v in labelled[: self.oracle_volumes]}  # [:None] is every one
        default = self.agents.get(DEFAULT_AGENTS_CURVE) if AGENTS_ON_LABEL in self.methods else None
        for vol in self.volumes:
            case = self.case_of(vol)
            for method in self.methods:
                if method not in QP_METHODS + QP_I_METHODS:
                    continue
                settings = self.qps if method in QP_METHODS else self.qp_is
                jobs.extend(PointJob(case, PointSpec(method, float(s))) for s in settings)
            for name, path in (self.agents.items() if AGENTS in self.methods else ()):
                jobs.extend(PointJob(case, PointSpec("dmic", float(lam)), {"agents": path}, name)
                            for lam in self.lambdas)
            if vol.label is not None and default is not None:
                on_label = replace(case, roi=vol.label)
                jobs.extend(PointJob(on_label, PointSpec("dmic", float(lam)), {"agents": default},
                                     DEFAULT_AGENTS_CURVE + ON_LABEL) for lam in self.lambdas)
            if vol.name in oracle_names and ORACLE in self.methods:
                jobs.extend(PointJob(case, PointSpec(ORACLE, float(q)), {"fg": fg, "bg": bg}, ORACLE)
                            for q in self.qp_is for fg in ORACLE_FG for bg in ORACLE_BG)
            if vol.name in oracle_names and ORACLE_EXTENDED in self.methods:
                jobs.extend(PointJob(case, PointSpec(ORACLE_EXTENDED, float(q)), {"fg": fg, "bg": bg},
                                     ORACLE_EXTENDED)
                            for q in self.qp_is for fg in ORACLE_FG for bg in ORACLE_EXTENDED_BG)
        return jobs


def fingerprint(plan: "ProtocolPlan") -> str:
    """What makes a point comparable to another: the segmenter (its weights, and its name unless it
    is the default), the coding setup, the x265 build and the volumes' slabs. Points live under
    ``WORK/<fingerprint>/``, so a retrained or another segmenter or another encoder starts a fresh
    log instead of mixing old and new numbers (:func:`carry_over_points` moves the points of the
    volumes a changed plan still codes the same way)."""
    import hashlib
    import json

    facts = {**_coding_facts(plan), "volumes": [v.as_dict()["slices"] for v in plan.volumes]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _coding_facts(plan: "ProtocolPlan") -> dict[str, Any]:
    """The fingerprint's facts other than the volumes: the models and the encoder."""
    from dmic_core.assets import sha256
    from dmic_core.codecs.x265 import x265_info
    from dmic_core.pipeline import TASK_CODING
    from dmic_core.segmentation.config import named_weights_path

    facts = {"segmenter": sha256(named_weights_path(plan.segmenter)), "coding": repr(TASK_CODING),
             "x265": x265_info().get("version")}
    if plan.segmenter != "builtin":  # the default's logs keep the key they always had
        facts["segmenter_name"] = plan.segmenter
    return facts


def carry_over_points(old: "ProtocolPlan", new: "ProtocolPlan", work: str | Path) -> int:
    """Copy into ``new``'s log every row of ``old``'s log whose volume both plans code identically
    (same name, image, label, slab and region), and return how many were added.

    A plan that moves one volume's slab gets a new fingerprint and so a new log; its other
    volumes' points are still valid (same models, coding and slabs) and need not be recoded. Rows
    the new log already holds are kept. Refused when the plans differ in anything but their
    volumes (segmenter weights, coding setup, x265 build)."""
    if _coding_facts(old) != _coding_facts(new):
        raise ValueError("the plans differ in segmenter, coding or encoder: their points are not comparable")
    same = {v.name for v in old.volumes if v in new.volumes}
    source = log_path(old, work)
    if not source.is_file():
        raise FileNotFoundError(f"no point log of the old plan at {source}")
    target = PointLog(log_path(new, work), row_key)
    return target.add_missing(row for row in PointLog(source, row_key) if row["volume"] in same)


def job_key(volume: str, job: PointJob) -> tuple:
    return (volume, job.name, float(job.spec.setting), job.options.get("fg"), job.options.get("bg"),
            _agents_sha(job.options.get("agents")))


def _agents_sha(path: str | None) -> str | None:
    """First 16 hex digits of an agents checkpoint's sha256 (a replaced checkpoint reruns its curve);
    hashed once per file version, not once per point."""
    if not path:
        return None
    stat = Path(path).stat()
    return _sha16(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _sha16(path: str, mtime_ns: int, size: int) -> str:
    from dmic_core.assets import sha256

    return sha256(Path(path))[:16]


def row_key(row: dict[str, Any]) -> tuple:
    return (row["volume"], row["curve"], float(row["setting"]), row.get("fg"), row.get("bg"),
            row.get("agents_sha"))


def current_rows(rows: Iterable[dict[str, Any]], plan: "ProtocolPlan") -> list[dict[str, Any]]:
    """The log's rows a report of ``plan`` may use: rows of the plan's volumes, and an agents
    curve's rows only for the checkpoint file its name points to now. A replaced checkpoint (a new
    default under the same name) keeps its earlier points in the log, but they are never mixed
    into the new curve."""
    names = {v.name for v in plan.volumes}
    shas = {name: _agents_sha(path) for name, path in plan.agents.items()}
    shas.update({name + ON_LABEL: sha for name, sha in shas.items()})
    return [r for r in rows if r["volume"] in names
            and (r["curve"] not in shas or r.get("agents_sha") == shas[r["curve"]])]


def log_path(plan: "ProtocolPlan", work: str | Path) -> Path:
    """``WORK/<fingerprint>/points.jsonl``: the point log of this plan's models and coding."""
    return Path(work) / fingerprint(plan) / "points.jsonl"


def run_protocol(plan: ProtocolPlan, work: str | Path, *, workers: int | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> PointLog:
    """Run every point of ``plan`` not yet in its log; returns the log of all points."""
    points = PointLog(log_path(plan, work), row_key)
    by_image = {v.image: v.name for v in plan.volumes}
    todo = [j for j in plan.jobs() if job_key(by_image[j.case.image], j) not in points]
    log(f"[evaluate] point log {points.path}")
    known = {}
    for row in points:
        if row["curve"] == ANCHOR:
            spec = next((v for v in plan.volumes if v.name == row["volume"]), None)
            if spec is not None:
                known[(plan.case_of(spec), float(row["setting"]))] = int(row["bits"])
    log(f"[evaluate] {len(todo)} points to run, {len(points)} done")
    start = time.perf_counter()

    def record(job: PointJob, result, done: int, total: int) -> None:
        row = {"volume": by_image[job.case.image], "curve": job.name, **result.row(),
               "fg": job.options.get("fg"), "bg": job.options.get("bg"),
               "agents_sha": _agents_sha(job.options.get("agents")),
               **{k: result.extra.get(k) for k in OFFSET_KEYS}}
        points.add(row)
        log(f"[evaluate] {done}/{total} {row['volume']} {row['curve']}@{row['setting']:g} "
            f"{row['bpp']:.4f} bpp mIoU {row['miou']:.4f} ({time.perf_counter() - start:.0f} s)")

    run_points(todo, workers=workers, on_point=record, anchor_bits=known, deciders=PROTOCOL_DECIDERS,
               annotate=offset_summary, keep_maps=False)
    return points


__all__ = ["AGENTS", "AGENTS_ON_LABEL", "ALL_METHODS", "DEFAULT_AGENTS_CURVE", "ON_LABEL", "agents_curve", "carry_over_points", "fingerprint", "ORACLE", "ORACLE_EXTENDED", "ProtocolPlan", "current_rows", "QP_I_METHODS", "QP_METHODS", "run_protocol", "shipped_agents"]
