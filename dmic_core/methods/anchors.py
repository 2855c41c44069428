"""The HEVC anchors: constant QP (HM's low-delay-P pattern) and x265 rate control at its rates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dmic_core.codecs.qp import hm_anchor_frame_qps
from dmic_core.methods.base import Decision
from dmic_core.pipeline import code_volume

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodingSetup

#: Nominal frame rate that turns a target rate in bits per frame into x265's kbps.
RATE_CONTROL_FPS = 25.0


def decide_hevc(case: "Case", setting: float, setup: "CodingSetup", **_: Any) -> Decision:
    """Constant-QP HEVC: HM's ``encoder_lowdelay_P_main.cfg`` frame QPs for base QP ``setting``."""
    return Decision(hm_anchor_frame_qps(int(setting), case.volume.n_frames))


def decide_ratecontrol(case: "Case", setting: float, setup: "CodingSetup", anchor_bits: float | None = None,
                       **_: Any) -> Decision:
    """x265 ABR at the rate the constant-QP anchor reached at base QP ``setting`` (``anchor_bits``
    when the caller has it, else the anchor is encoded here)."""
    start = time.perf_counter()
    info: dict[str, Any] = {}
    if anchor_bits is None:
        anchor = code_volume(case.volume, frame_qps=hm_anchor_frame_qps(int(setting), case.volume.n_frames),
                             setup=setup)
        anchor_bits = anchor.encode.total_bits
        info["anchor_encoded"] = True
    kbps = anchor_bits / case.volume.n_frames * RATE_CONTROL_FPS / 1000.0
    info["target_bits"] = anchor_bits
    return Decision(None, None, bitrate_kbps=kbps, seconds=time.perf_counter() - start, info=info)
