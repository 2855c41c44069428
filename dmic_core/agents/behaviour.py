"""What "the agents behave as their reward says" means, in one place (issue 13).

Used by training's checkpoint selection (:meth:`dmic_core.agents.a2c.A2CTrainer.evaluate_greedy`)
and by ``bench/agents_behaviour.py``; ``tests/test_agents_behaviour.py`` states the same four
properties on the shipped default agents:

1. at lambda = 0 the reward is rate alone, so the frame agent takes the coarsest QP_I;
2. the mean QP never rises as lambda grows (more weight on accuracy never buys less quality);
3. no foreground CTU is coarser than a background CTU of its frame;
4. decisions are deterministic for a given checkpoint.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Slack for comparing mean QPs (floating sums of integers).
QP_TOLERANCE = 1e-9


def lambda0_is_coarsest(qp_i_at_lambda0: int, qp_i_actions: Sequence[int]) -> bool:
    """Property 1: the QP_I chosen at lambda = 0 is the space's coarsest."""
    return int(qp_i_at_lambda0) == max(int(q) for q in qp_i_actions)


def mean_qp_rises(lambdas: Sequence[float], mean_qps: Sequence[float]) -> list[tuple[float, float]]:
    """Property 2's violations: the ``(lambda, next lambda)`` pairs (ascending) where the mean QP rises."""
    order = np.argsort(np.asarray(lambdas, dtype=float), kind="stable")
    lam = [float(lambdas[i]) for i in order]
    qp = [float(mean_qps[i]) for i in order]
    return [(a, b) for a, b, qa, qb in zip(lam, lam[1:], qp, qp[1:]) if qb > qa + QP_TOLERANCE]


def frames_with_foreground_coarser(offsets: np.ndarray, foreground: np.ndarray) -> tuple[int, int]:
    """Property 3: ``(frames where a foreground CTU is coarser than a background one, frames that
    hold both)``; ``offsets`` and ``foreground`` are ``(frames, rows, cols)``."""
    offsets, foreground = np.asarray(offsets), np.asarray(foreground, dtype=bool)
    inverted = checked = 0
    for f in range(offsets.shape[0]):
        fg, bg = offsets[f][foreground[f]], offsets[f][~foreground[f]]
        if fg.size and bg.size:
            checked += 1
            inverted += int(fg.max() > bg.min())
    return inverted, checked


__all__ = ["QP_TOLERANCE", "lambda0_is_coarsest", "mean_qp_rises", "frames_with_foreground_coarser"]
