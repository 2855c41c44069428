"""The shipped default agents behave as their reward says (issue 13), on a phantom no model saw.

1. at lambda = 0 the reward is rate alone: the frame agent picks the coarsest QP_I;
2. the mean coded QP never rises as lambda grows (more weight on accuracy, never less quality);
3. no foreground CTU is coarser than a background CTU of its frame;
4. decisions are deterministic for a given checkpoint.

The phantom comes from the ``agents-bench`` seed range (a test range: nothing trains or selects
on it); the region is the segmentation of the original, as at use time.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmic_core.defaults import EVALUATION_LAMBDAS


@pytest.fixture(scope="module")
def decisions():
    from dmic_core.agents.inference import load_agents
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.datasets.seeds import seed_range
    from dmic_core.finetune.data import heart_slab
    from dmic_core.segmentation import load_segmenter

    seed = seed_range("agents-bench").start
    volume, label = generate_phantom(seed, n_slices=64)
    start, stop = heart_slab(label > 0, 33)
    slab = volume.slab(start, stop)
    roi = np.asarray(load_segmenter("builtin").segment(slab)) > 0
    agents = load_agents()
    return agents, slab.hu, roi, {lam: agents.decide(slab.hu, roi, lam) for lam in EVALUATION_LAMBDAS}


def test_rate_only_reward_takes_the_coarsest_qp_i(decisions):
    agents, _, _, by_lambda = decisions
    assert by_lambda[0.0].qp_i == max(agents.space.qp_i)


def test_mean_qp_never_rises_with_lambda(decisions):
    _, _, _, by_lambda = decisions
    mean_qp = [float(by_lambda[lam].qp_map.mean()) for lam in EVALUATION_LAMBDAS]
    rises = [(a, b) for a, b in zip(mean_qp, mean_qp[1:]) if b > a + 1e-9]
    assert not rises, f"mean QP by lambda {dict(zip(EVALUATION_LAMBDAS, mean_qp))}"
    assert mean_qp[-1] < mean_qp[0], "lambda does not move the decision at all"


def test_foreground_never_coarser_than_background(decisions):
    from dmic_core.maps import foreground_ctus

    _, _, roi, by_lambda = decisions
    fg = foreground_ctus(roi)
    for lam, d in by_lambda.items():
        for f in range(fg.shape[0]):
            if fg[f].any() and (~fg[f]).any():
                assert d.offsets[f][fg[f]].max() <= d.offsets[f][~fg[f]].min(), (lam, f)


def test_decisions_are_deterministic(decisions):
    agents, hu, roi, by_lambda = decisions
    for lam in (0.0, 10.0, 100.0):
        again = agents.decide(hu, roi, lam)
        assert again.qp_i == by_lambda[lam].qp_i
        assert np.array_equal(again.offsets, by_lambda[lam].offsets)
