"""Running points: one point (:func:`run_point`), many points in worker processes (:func:`run_points`).

* :mod:`~dmic_core.runs.point` -- :func:`run_point`: decide (:mod:`dmic_core.methods`), code
  (:func:`dmic_core.pipeline.code_volume`), score (:mod:`dmic_core.evaluation`), write the folder.
* :mod:`~dmic_core.runs.cases` -- :class:`CaseSpec` (which volume, label, segmenter, frames) and
  :func:`cached_case`, the case kept per process.
* :mod:`~dmic_core.runs.runner` -- :func:`run_points`: :class:`PointJob` lists on one or many
  volumes, anchors first, in spawned worker processes.
* :mod:`~dmic_core.runs.log` -- :class:`PointLog`: finished points as JSON lines, for resuming.

Sweeps, experiments and benches call :func:`run_points`; app jobs and dataset batches queue point
tasks in the job store (:mod:`dmic_core.jobs`), whose workers (local processes or Ray) run each with
:func:`run_point` on :func:`cached_case`.
"""

from dmic_core.runs.cases import CaseSpec, cached_case, resolve_slices
from dmic_core.runs.log import PointLog
from dmic_core.runs.point import run_point
from dmic_core.runs.runner import PointJob, default_workers, run_points

__all__ = ["CaseSpec", "PointJob", "PointLog", "cached_case", "default_workers", "resolve_slices", "run_point",
           "run_points"]
