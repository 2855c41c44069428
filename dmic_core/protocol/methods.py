"""The protocol's reference rules, beside the registry's methods (passed to the runner as ``deciders``).

* ``gop8``: the agents' and maps' frame-level rule alone (QP_I and the paper's GOP-8 P-frame
  QPs, no CTU offsets): how much of a method's gain is the frame QP pattern, not the CTU map.
* ``oracle``: the best the paper's action space can do knowing the *ground-truth* mask: one
  offset on every CTU that holds label, another on every other CTU, QP_I from the paper's range;
  the protocol runs every (QP_I, fg, bg) of :data:`ORACLE_FG` x :data:`ORACLE_BG` and keeps the
  upper envelope of all of them (a per-lambda search over the same family picks points on it).
  It tells whether a method's gap is the method's or the action space's. Not a method a sender
  can use: it needs the label.
* ``two_level`` and ``two_level_ext``: rules a sender *can* use (no label): offset 0 on the CTUs
  the segmenter marks in the original (the case's ``roi``, as the agents see it) and
  :data:`TWO_LEVEL_BG` (+8, the paper space's coarsest) or :data:`TWO_LEVEL_EXT_BG` (+12, only in
  the extended space) elsewhere. Each is the label-free twin of one oracle pair (fg 0, bg +8 or
  +12): the difference between the two is what the segmenter's mask costs, without agents.
* ``two_level on label`` (:data:`TWO_LEVEL_ON_LABEL`): not coded by itself. It is the oracle's points of
  the one pair ``two_level`` uses (fg 0, bg :data:`TWO_LEVEL_BG`), 8 points like every method's curve
  (:func:`dmic_core.protocol.summary.with_label_twin`). The oracle's curve is the envelope of 72
  points per volume, and an envelope over more points of one method sits higher for no other
  reason (``bench/envelope_bonus.py``); this twin is the like-for-like bound: the same rule, the same
  number of points, the label as its mask.
* ``oracle_extended``: the same family in the extended action space. Its points are the
  background offsets beyond the paper's (:data:`ORACLE_EXTENDED_BG`); its curve is the upper
  envelope of those *and* the ``oracle`` points (:func:`dmic_core.protocol.summary.with_extended_oracle`), so it is never
  below the paper-space oracle.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dmic_core.agents.spaces import EXTENDED, PAPER
from dmic_core.codecs.qp import dmic_frame_qps
from dmic_core.maps import mask_ctu_dqp
from dmic_core.methods.base import Decider, Decision
from dmic_core.methods.maps import clip_qp_i

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodingSetup

#: Curve names of the two oracles (the extended one's curve also takes the paper oracle's points).
ORACLE = "oracle"
ORACLE_EXTENDED = "oracle_extended"
#: Curve names of the protocol's two reference rules outside the method registry.
GOP8 = "gop8"
TWO_LEVEL = "two_level"
TWO_LEVEL_EXT = "two_level_ext"
#: Suffix of a curve whose method was given the ground-truth label as its mask (a bound, not a method).
ON_LABEL = " on label"
#: ``two_level``'s ground-truth twin, taken from the oracle's points (see the module docstring).
TWO_LEVEL_ON_LABEL = TWO_LEVEL + ON_LABEL

#: Foreground and background offsets the oracle searches: the paper space's finer foreground
#: offsets and its coarser background offsets (a foreground CTU never coarser than background).
ORACLE_FG: tuple[int, ...] = tuple(o for o in PAPER.fg_offsets if o <= 0)
ORACLE_BG: tuple[int, ...] = tuple(o for o in PAPER.bg_offsets if o >= 4)
#: Background offsets only the extended space has, searched by ``oracle_extended`` (every 4 QPs:
#: 12, 16, 20), with the same foreground offsets.
ORACLE_EXTENDED_BG: tuple[int, ...] = tuple(o for o in EXTENDED.bg_offsets if o > max(PAPER.bg_offsets) and o % 4 == 0)


def decide_gop8(case: "Case", setting: float, setup: "CodingSetup", **_: Any) -> Decision:
    """QP_I = ``setting`` as given (the sweep report also runs it outside the paper's range)."""
    return Decision(dmic_frame_qps(int(setting), case.volume.n_frames), None)


#: Background offset of ``two_level_ext``: the one most often on the extended oracle's upper
#: envelope with +16 on the first four evaluation phantoms (beyond the paper's +8). That is a
#: setting chosen on evaluation volumes: the rule is a reference, not a method, and its figures
#: on phantoms 9000-9003 are not clean results (docs/results/evaluation/RUN.md).
TWO_LEVEL_EXT_BG = 12
#: Background offset of ``two_level``: the paper space's coarsest, the one every shipped agent
#: gives its background CTUs at every lambda (the protocol's point log: mean_bg_offset 8.0).
#: Fixed by the action space, not read off any volume's results.
TWO_LEVEL_BG = max(PAPER.bg_offsets)


def _two_level(case: "Case", setting: float, bg: int) -> Decision:
    start = time.perf_counter()
    dqp = mask_ctu_dqp(case.reference.roi, 0, bg)
    return Decision(dmic_frame_qps(clip_qp_i(setting), case.volume.n_frames), dqp,
                    seconds=time.perf_counter() - start, info={"fg": 0, "bg": bg})


def decide_two_level(case: "Case", setting: float, setup: "CodingSetup", **_: Any) -> Decision:
    """Offset 0 on the segmenter's foreground CTUs, +8 on the others, QP_I = ``setting``: the
    paper-space rule whose ground-truth twin is the oracle's pair (fg 0, bg +8)."""
    return _two_level(case, setting, TWO_LEVEL_BG)


def decide_two_level_ext(case: "Case", setting: float, setup: "CodingSetup", **_: Any) -> Decision:
    """Offset 0 on the segmenter's foreground CTUs, +12 on the others, QP_I = ``setting``."""
    return _two_level(case, setting, TWO_LEVEL_EXT_BG)


def decide_oracle(case: "Case", setting: float, setup: "CodingSetup", fg: int = 0, bg: int = 8,
                  **_: Any) -> Decision:
    """Two-level map on the ground-truth mask (the case's reference), QP_I = ``setting``."""
    if case.reference.kind != "label":
        raise ValueError("the oracle needs a ground-truth label (the case has none)")
    if fg not in EXTENDED.fg_offsets or bg not in EXTENDED.bg_offsets:
        raise ValueError(f"oracle offsets fg={fg}, bg={bg} are outside the extended action space")
    start = time.perf_counter()
    dqp = mask_ctu_dqp(case.reference.reference, fg, bg)
    return Decision(dmic_frame_qps(clip_qp_i(setting), case.volume.n_frames), dqp,
                    seconds=time.perf_counter() - start, info={"fg": fg, "bg": bg})


PROTOCOL_DECIDERS: dict[str, Decider] = {GOP8: decide_gop8, TWO_LEVEL: decide_two_level,
                                          TWO_LEVEL_EXT: decide_two_level_ext,
                                          ORACLE: decide_oracle, ORACLE_EXTENDED: decide_oracle}


__all__ = ["GOP8", "ORACLE", "ORACLE_BG", "ORACLE_EXTENDED", "ORACLE_EXTENDED_BG", "ORACLE_FG", "PROTOCOL_DECIDERS",
           "TWO_LEVEL", "TWO_LEVEL_BG", "TWO_LEVEL_EXT", "TWO_LEVEL_EXT_BG", "decide_gop8",
           "decide_oracle", "decide_two_level", "decide_two_level_ext"]
