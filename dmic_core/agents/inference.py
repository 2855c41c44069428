"""Agents at use time: load a checkpoint once per process and decide a volume's QPs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dmic_core.agents.dmic import DMICAgents
from dmic_core.volume import Volume

#: File name of the shipped pretrained agents under ``assets/``.
PRETRAINED_NAME = "agents_pretrained.pt"


def default_checkpoint() -> Path:
    """The shipped pretrained agents (``assets/agents_pretrained.pt``)."""
    from dmic_core.assets import asset_path

    return asset_path(PRETRAINED_NAME)


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> DMICAgents:
    return DMICAgents.load(path).eval()


def load_agents(checkpoint: str | Path | None = None) -> DMICAgents:
    """Agents from ``checkpoint`` (default: the shipped ones), cached per process."""
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    if not path.is_file():
        from dmic_core.errors import DmicInputError

        raise DmicInputError("agent checkpoint not found", path)
    return _load(str(path.resolve()), path.stat().st_mtime)


def decide_qps(volume: Volume, roi: np.ndarray, lam: float, checkpoint: str | Path | None = None,
               *, qp_i: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Paper frame QPs ``(F,)``, CTU offsets ``(F, rows, cols)`` and info for ``volume`` at ``lam``.

    ``roi`` is the task mask of the original (what the sender sees); ``qp_i`` forces QP_I.
    """
    agents = load_agents(checkpoint)
    d = agents.decide(volume.hu, np.asarray(roi), float(lam), qp_i=qp_i)
    info = {"qp_i": d.qp_i, "lambda": float(lam), "space": agents.space.name,
            "agent_seconds": d.seconds, "checkpoint": str(checkpoint) if checkpoint else PRETRAINED_NAME,
            "strategy": agents.meta.get("strategy"), "mean_ctu_dqp": float(np.mean(d.offsets))}
    return d.frame_qps, d.offsets, info
