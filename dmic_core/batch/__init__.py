"""Dataset batches: every (volume, method, setting) of a dataset as a task of the job store.

``dmic batch DATASET --out DIR`` (:mod:`dmic_core.cli.batch`) is :func:`run_batch`: discover the
volumes (:mod:`~dmic_core.datasets.discovery`), plan one task per point (:mod:`~dmic_core.batch.plan`),
run them with the app's runner on local processes or Ray, and write the tables
(:mod:`~dmic_core.batch.aggregate`). Everything is resumable from ``DIR/jobs.sqlite``.
"""

from dmic_core.batch.plan import BatchConfig, plan_tasks
from dmic_core.batch.run import BatchResult, run_batch
from dmic_core.datasets.discovery import VolumeEntry, discover

__all__ = ["BatchConfig", "BatchResult", "VolumeEntry", "discover", "plan_tasks", "run_batch"]
