"""Scoring coded volumes: task accuracy, the point record and its folder, BD tables.

* :mod:`~dmic_core.evaluation.accuracy` -- the one task accuracy: the mIoU (mean of vessel and
  background IoU, :func:`dmic_core.metrics.task.segmentation_scores`) of the decoded volume's
  segmentation against the reference (the label when there is one, else the segmentation of the
  original); agents, sweeps, batches and the app all score with :func:`task_accuracy`.
* :mod:`~dmic_core.evaluation.case` -- :class:`Case`: a volume with its reference, segmented once.
* :mod:`~dmic_core.evaluation.points` -- :class:`PointResult` (the row of ``points.csv``, the job
  summary, ``result.json``) and :func:`write_point_folder`, the one writer of point folders.
* :mod:`~dmic_core.evaluation.bd` -- BD-rate / BD-mIoU tables against constant-QP HEVC.
"""

from dmic_core.evaluation.accuracy import TaskReference, accuracy_drop, make_reference, task_accuracy
from dmic_core.evaluation.case import Case, load_case
from dmic_core.evaluation.points import POINT_COLUMNS, POINT_FILES, PointResult, write_point_folder

__all__ = ["Case", "POINT_COLUMNS", "POINT_FILES", "PointResult", "TaskReference", "accuracy_drop", "load_case",
           "make_reference", "task_accuracy", "write_point_folder"]
