"""The decider interface: what a method decides for a case at one setting.

A *decider* is ``decide(case, setting, setup, **options) -> Decision``: given the case (the
volume and its task reference: the region the sender protects), the setting of the rate point
(base QP, QP_I or lambda, see :class:`PointSpec`) and the coding setup, it returns the paper frame
QPs and CTU offsets to code with, or a target rate. Options a method does not know are ignored, so
one options dict can go to every method (``agents`` for dmic, ``anchor_bits`` for ratecontrol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodingSetup


@dataclass(frozen=True)
class PointSpec:
    """One rate point. ``setting`` is the base QP (hevc, ratecontrol: the anchor QP whose rate it
    targets), the paper QP_I (hand-crafted maps) or lambda (dmic)."""

    method: str
    setting: float


@dataclass
class Decision:
    """What a method decides for a volume: paper frame QPs and CTU offsets, or a target rate."""

    frame_qps: np.ndarray | None
    ctu_dqp: np.ndarray | None = None
    bitrate_kbps: float | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class Decider(Protocol):
    def __call__(self, case: "Case", setting: float, setup: "CodingSetup", **options: Any) -> Decision: ...
