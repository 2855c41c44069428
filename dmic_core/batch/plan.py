"""From a dataset and the chosen rate points to job-store tasks: one per (volume, method, setting).

The batch's job id is fixed per output folder, so re-running ``dmic batch`` with the same
``--out`` re-submits the same task list: the store keeps finished tasks (they are skipped) and
only adds what is new. Settings that change what a finished result means (segmenter, codec,
bit depth, slices) are fingerprinted, and a re-run with other values is refused instead of
silently mixing results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dmic_core.datasets.discovery import VolumeEntry
from dmic_core.errors import DmicInputError
from dmic_core.jobs import JobStore, TaskSpec
from dmic_core.jobs.tasks import point_tasks
from dmic_core.defaults import LAMBDA_GRID, QP_GRID
from dmic_core.methods import METHOD_NAMES, default_specs

#: Job id of a batch inside its own output folder's store (one batch per folder).
BATCH_JOB_ID = "batch"
BATCH_OWNER = "batch"


@dataclass(frozen=True)
class BatchConfig:
    """What every volume of a batch is run with.

    Attributes:
        methods / qps / lambdas: the rate points (see :func:`dmic_core.methods.default_specs`).
        segmenter: ``builtin`` (the shipped U-Net) or ``gt`` (the label; needs labels).
        slices: ``"A:B"`` frames kept of every volume (resolved per volume), or None for all.
        setup: coding setup as the job tasks take it (codec, bit_depth, window, preset).
        agents: DMIC agent checkpoint, or None for the shipped one.
    """

    methods: tuple[str, ...] = ("hevc", "dmic")
    qps: tuple[float, ...] = tuple(float(q) for q in QP_GRID)
    lambdas: tuple[float, ...] = tuple(float(v) for v in LAMBDA_GRID)
    segmenter: str = "builtin"
    slices: str | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    agents: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """The settings a finished task's result depends on (rate points excluded: they add tasks)."""
        return {"segmenter": self.segmenter, "slices": self.slices, "setup": self.setup, "agents": self.agents}


def validate(config: BatchConfig, entries: Sequence[VolumeEntry], dataset: str | Path) -> None:
    """Refuse a batch that cannot run before any task starts (one line naming the dataset)."""
    unknown = sorted(set(config.methods) - set(METHOD_NAMES))
    if unknown:
        raise DmicInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    if not config.methods:
        raise DmicInputError("no methods chosen")
    if any(m != "dmic" for m in config.methods) and not config.qps:
        raise DmicInputError("no QPs chosen")
    if "dmic" in config.methods and not config.lambdas:
        raise DmicInputError("no lambdas chosen for dmic")
    _check_assets(config)
    if config.segmenter == "gt":
        missing = [e.case_id for e in entries if e.label is None]
        if missing:
            raise DmicInputError(f"segmenter 'gt' needs a label for every volume; none for {', '.join(missing[:5])}"
                                 + (" ..." if len(missing) > 5 else ""), dataset)


def _check_assets(config: BatchConfig) -> None:
    """Missing model weights would fail every task the same way: say so once, up front."""
    from dmic_core.agents.inference import default_agents_path
    from dmic_core.assets import asset_path

    try:
        from dmic_core.segmentation.config import NAMED_WEIGHTS

        if config.segmenter in NAMED_WEIGHTS:
            asset_path(NAMED_WEIGHTS[config.segmenter])
        if "dmic" in config.methods:
            if config.agents:
                if not Path(config.agents).is_file():
                    raise FileNotFoundError(f"agent checkpoint not found: {config.agents}")
            else:
                default_agents_path()
    except FileNotFoundError as exc:
        raise DmicInputError(str(exc)) from None


def plan_tasks(entries: Sequence[VolumeEntry], config: BatchConfig, out: Path) -> list[TaskSpec]:
    """Every (volume, method, setting) of the batch as a ``point`` task writing under ``out/points``.

    Volume-major order: with one worker the first volumes finish completely (and their BD tables
    fill in) before later ones start.
    """
    specs = default_specs(config.methods, config.qps, config.lambdas)
    tasks = []
    for entry in entries:
        params: dict[str, Any] = {"label": entry.label, "segmenter": config.segmenter, "setup": config.setup,
                                  "case_id": entry.case_id}
        if config.slices:
            params["slices"] = config.slices
        tasks += point_tasks(entry.image, specs, out / "points" / entry.case_id, params,
                             {"agents": config.agents} if config.agents else None)
    return tasks


def submit(store: JobStore, entries: Sequence[VolumeEntry], config: BatchConfig, out: Path,
           dataset: str | Path) -> tuple[str, list[TaskSpec]]:
    """Create (or extend) the batch job in ``store``; returns the job id and the planned tasks.

    Raises:
        DmicInputError: the folder already holds a batch run with other result-defining settings.
    """
    tasks = plan_tasks(entries, config, out)
    fingerprint = config.fingerprint()
    existing = store.job(BATCH_JOB_ID)
    if existing is not None:
        before = existing["params"].get("fingerprint")
        if before is not None and _digest(before) != _digest(fingerprint):
            changed = sorted(k for k in fingerprint if before.get(k) != fingerprint[k])
            raise DmicInputError(f"this folder holds a batch run with other settings ({', '.join(changed)}); "
                                 "use another --out or the same settings", out)
    store.create_job(BATCH_OWNER, tasks, job_id=BATCH_JOB_ID, title=f"batch of {len(entries)} volumes",
                     params={"dataset": str(dataset), "fingerprint": fingerprint, "config": asdict(config)})
    return BATCH_JOB_ID, tasks


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
