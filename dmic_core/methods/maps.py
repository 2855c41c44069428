"""The hand-crafted CTU maps as methods: the paper's frame QPs at QP_I, a fixed map of offsets."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from dmic_core.agents.handcrafted import handcrafted_offsets
from dmic_core.codecs.qp import PAPER_QP_I_MAX, PAPER_QP_I_MIN, dmic_frame_qps
from dmic_core.methods.base import Decider, Decision

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodingSetup


def clip_qp_i(setting: float) -> int:
    """A QP as the hand-crafted maps use it: a paper QP_I, clipped to the paper's QP_I range."""
    return int(np.clip(int(setting), PAPER_QP_I_MIN, PAPER_QP_I_MAX))


def handcrafted_decider(kind: str) -> Decider:
    """The decider of the hand-crafted map ``kind`` (a key of :data:`dmic_core.agents.handcrafted.SHAPES`)."""
    def decide(case: "Case", setting: float, setup: "CodingSetup", **_: Any) -> Decision:
        start = time.perf_counter()
        dqp = handcrafted_offsets(case.reference.roi, kind)
        return Decision(dmic_frame_qps(clip_qp_i(setting), case.volume.n_frames), dqp,
                        seconds=time.perf_counter() - start)

    decide.__name__ = f"decide_{kind}"
    return decide
