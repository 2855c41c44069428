"""DMIC: the agents choose QP_I and the CTU offsets for the trade-off weight lambda."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dmic_core.methods.base import Decision

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodingSetup


def decide_dmic(case: "Case", setting: float, setup: "CodingSetup", agents: str | None = None,
                **_: Any) -> Decision:
    """The agents of checkpoint ``agents`` (default :data:`dmic_core.defaults.DEFAULT_AGENTS`; a
    missing checkpoint is an error naming it, never a silent fallback to other agents)."""
    from dmic_core.agents.inference import load_agents

    start = time.perf_counter()
    decision = load_agents(agents).decide(case.volume.hu, case.reference.roi, float(setting))
    return Decision(decision.frame_qps, decision.offsets, seconds=time.perf_counter() - start,
                    info={"qp_i": decision.qp_i, "agent_seconds": decision.seconds})
