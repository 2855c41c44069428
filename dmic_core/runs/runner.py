"""Run many points on one or many volumes in worker processes: the one point runner.

:func:`run_points` is what ``dmic sweep`` (:func:`dmic_core.sweep.run_sweep`), the experiments'
curves (:func:`dmic_core.experiments.curves.evaluate_case`) and the sweep report bench run;
the job system (app jobs, dataset batches) runs the same :func:`~dmic_core.runs.point.run_point`
and :func:`~dmic_core.runs.cases.cached_case` per claimed task (:mod:`dmic_core.jobs.tasks`).

Order: the constant-QP anchor's points run first, so rate control can target the rate its anchor
reached on the same volume instead of encoding the anchor again (the result is the same; only the
time differs). Results come back in the order they finish through ``on_point`` (where a caller
records them, e.g. in a :class:`~dmic_core.runs.log.PointLog`, so an interrupted run resumes).
Workers are spawned, not forked (forking a process that holds other libraries' threads, from Ray,
gRPC or OpenMP, can deadlock the child), one torch thread each; each keeps its last case.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from dmic_core.evaluation.case import Case
from dmic_core.evaluation.points import PointResult
from dmic_core.methods.base import Decider, PointSpec
from dmic_core.methods.registry import ANCHOR
from dmic_core.pipeline import TASK_CODING, CodingSetup
from dmic_core.runs.cases import CaseSpec, cached_case
from dmic_core.runs.point import run_point


@dataclass
class PointJob:
    """A point to run: the volume, the (method, setting), the decider's options and the caller's
    name for the curve it belongs to (default: the method)."""

    case: CaseSpec
    spec: PointSpec
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.spec.method


#: ``annotate(case, result) -> dict``: extra values computed in the worker, where the case is
#: (stored in ``result.extra``); must be picklable (a module-level function).
Annotate = Callable[[Case, PointResult], dict[str, Any]]
OnPoint = Callable[[PointJob, PointResult, int, int], None]


def default_workers() -> int:
    """Point workers by default: two, or one on a one-core machine."""
    return max(1, min(2, os.cpu_count() or 1))


def _init_worker() -> None:
    import torch

    from dmic_core.runtime import configure_allocator

    configure_allocator()
    torch.set_num_threads(1)


def _run_job(job: PointJob, setup: CodingSetup, deciders: Mapping[str, Decider] | None, annotate: Annotate | None,
             keep_maps: bool) -> PointResult:
    case = cached_case(job.case)
    result = run_point(case, job.spec, setup=setup, deciders=deciders, **job.options)
    if annotate is not None:
        result.extra.update(annotate(case, result))
    if not keep_maps:
        result.qp_map = None  # keep inter-process payloads small
    return result


def run_points(jobs: Sequence[PointJob], *, setup: CodingSetup = TASK_CODING, workers: int | None = None,
               on_point: OnPoint | None = None, anchor_bits: Mapping[tuple[CaseSpec, float], int] | None = None,
               deciders: Mapping[str, Decider] | None = None, annotate: Annotate | None = None,
               keep_maps: bool = False) -> list[tuple[PointJob, PointResult]]:
    """Run ``jobs`` in ``workers`` processes (default :func:`default_workers`); returns every
    (job, result) in the order they finished.

    ``anchor_bits``: anchor rates already known per (case, base QP) (from an earlier, resumed run);
    the anchors run here add theirs. ``on_point(job, result, done, total)`` is called in this
    process as each point finishes.
    """
    known: dict[tuple[CaseSpec, float], int] = dict(anchor_bits or {})
    done: list[tuple[PointJob, PointResult]] = []
    if not jobs:
        return done
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers or default_workers(), mp_context=context,
                             initializer=_init_worker) as pool:
        for phase in ([j for j in jobs if j.spec.method == ANCHOR], [j for j in jobs if j.spec.method != ANCHOR]):
            futures = {}
            for job in phase:
                options = dict(job.options)
                if job.spec.method == "ratecontrol" and "anchor_bits" not in options:
                    bits = known.get((job.case, float(job.spec.setting)))
                    if bits is not None:
                        options["anchor_bits"] = bits
                job = PointJob(job.case, job.spec, options, job.name)
                futures[pool.submit(_run_job, job, setup, deciders, annotate, keep_maps)] = job
            for future in as_completed(futures):
                job, result = futures[future], future.result()
                done.append((job, result))
                if job.spec.method == ANCHOR:
                    known[(job.case, float(job.spec.setting))] = result.bits
                if on_point is not None:
                    on_point(job, result, len(done), len(jobs))
    return done
