"""The paper's tables on our data (issue 5): ``dmic experiments {table1,table2,table3,table4,fig2}``.

:func:`run_experiments` trains the checkpoints the requested tables need (few-shot tuning on the
surrogate, :mod:`dmic_core.finetune`; :mod:`dmic_core.experiments.training`), evaluates every curve
with *real* encodes on held-out test volumes (:mod:`dmic_core.experiments.curves`, through
:func:`dmic_core.runs.run_points`) and writes each table as CSV, Markdown and plotly HTML
(:mod:`dmic_core.experiments.tables`); :mod:`dmic_core.experiments.config` says what they run on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from dmic_core.defaults import repo_relative
from dmic_core.evaluation.bd import pooled_curves
from dmic_core.experiments.config import TABLES, ExperimentConfig
from dmic_core.experiments.curves import evaluate
from dmic_core.experiments.training import needed_runs

#: Config fields holding paths: written repository-relative, so results carry no machine's paths.
_PATH_FIELDS = ("data", "out", "work_dir", "pretrained", "cache_dir", "extra_volumes")


def _portable_config(cfg: ExperimentConfig) -> dict:
    config = asdict(cfg)
    for key in _PATH_FIELDS:
        value = config.get(key)
        if isinstance(value, (list, tuple)):
            config[key] = [repo_relative(v) for v in value]
        elif value:
            config[key] = repo_relative(value)
    return config


def run_experiments(tables: Sequence[str], cfg: ExperimentConfig, command: str | None = None,
                    log: Callable[[str], None] = print) -> dict[str, pd.DataFrame]:
    """Train, evaluate and write ``tables`` (any of :data:`TABLES`) into ``cfg.out``."""
    from dmic_core.experiments.tables import BUILDERS

    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; choose from {list(TABLES)}")
    t0 = time.perf_counter()
    points = evaluate(tables, cfg, log)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    points.to_csv(out / "points.csv", index=False)
    if len(points):  # pooled per domain (phantom test volumes / real CT), never across them
        pd.concat([pooled_curves(g).assign(domain=d) for d, g in points.groupby("domain")],
                  ignore_index=True).to_csv(out / "pooled_curves.csv", index=False)
    results = {t: BUILDERS[t](points, cfg, out, command) for t in tables}
    meta = {"tables": list(tables), "config": _portable_config(cfg), "command": command,
            "runs": [r.name for r in needed_runs(tables, cfg)], "seconds": time.perf_counter() - t0}
    (out / "experiments.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return results


__all__ = ["ExperimentConfig", "TABLES", "run_experiments"]
