"""The frame agent tuned on real tables (dmic_core.agents.frame_tuning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmic_core.agents.dmic import DMICAgents
from dmic_core.agents.frame_tuning import (EVAL_LAMBDAS, FrameClip, FrameTable, FrameTuneConfig, greedy_frame_score,
                                           real_frame_table, tune_frame_agent)
from dmic_core.agents.spaces import PAPER, ActionSpace


def _table(name: str, knee: int, slope: float = 0.004) -> FrameTable:
    """A table shaped like a real one: rate halves every 6 QP, accuracy falls off above ``knee``."""
    qp = np.asarray(PAPER.qp_i)
    rate = 2.0 ** ((22 - qp) / 6.0)
    drop = slope * np.clip(qp - knee, 0, None) ** 1.5
    return FrameTable(name, PAPER.qp_i, rate, drop)


def test_table_targets_follow_the_reward_and_the_monotone_fit():
    t = _table("t", knee=24)
    assert t.best_action(0.0) == len(PAPER.qp_i) - 1                  # rate only: the coarsest QP_I
    qps = [t.qp_i[t.best_action(lam)] for lam in (0, 1, 10, 100, 1000)]
    assert qps == sorted(qps, reverse=True) and qps[-1] < qps[0]
    # a noisy table: one QP_I "gains" accuracy by coding coarser; the fit removes the dip
    noisy = FrameTable("n", t.qp_i, t.rate, t.drop.copy())
    i30 = t.qp_i.index(30)
    noisy.drop[i30] = noisy.drop[i30 - 1] - 0.01
    fitted = noisy.monotone_drop()
    assert np.all(np.diff(fitted) >= -1e-12)
    assert fitted[i30] == pytest.approx(fitted[i30 - 1])
    assert FrameTable.from_dict(noisy.to_dict()).to_dict() == noisy.to_dict()


def test_tuning_moves_the_frame_agent_to_each_table_s_best_qp_and_keeps_the_ctu_agent():
    torch.manual_seed(0)
    agents = DMICAgents(PAPER)
    ctu_before = {k: v.clone() for k, v in agents.ctu.state_dict().items()}
    rng = np.random.default_rng(0)

    def clip(name: str, knee: int) -> FrameClip:
        hu = rng.integers(-1000, 1200, (4, 128, 128)).astype(np.int16)
        mask = np.zeros(hu.shape, np.uint8)
        mask[:, 60:64, 10:100] = 1
        return FrameClip.from_volume(hu, mask, _table(name, knee))

    train = [clip(f"train{k}", knee) for k, knee in enumerate((23, 25, 24))]
    val = [clip("val", 24)]
    before = greedy_frame_score(agents, val)
    history = tune_frame_agent(agents, train, val, FrameTuneConfig(iterations=120, lr=1e-2, eval_every=20))
    after = greedy_frame_score(agents, val)
    assert history[-1]["val_reward"] == pytest.approx(after["reward"])
    assert after["reward"] > before["reward"]
    assert after["behaves"]                                            # coarsest at 0, never coarser with lambda
    table = val[0].table
    optimum = np.mean([table.rewards(lam)[table.best_action(lam)] for lam in EVAL_LAMBDAS])
    assert after["reward"] - optimum > 0.5 * (before["reward"] - optimum)   # most of the way there
    chosen = after["qp_i"]["val"]
    assert chosen[0] == 37 and abs(chosen[-1] - table.qp_i[table.best_action(100.0)]) <= 2
    for k, v in agents.ctu.state_dict().items():
        assert torch.equal(v, ctu_before[k]), k


def test_tuning_refuses_tables_of_another_space():
    agents = DMICAgents(PAPER)
    other = FrameTable("x", (30, 34), np.ones(2), np.zeros(2))
    planes = torch.zeros(2, 5, 64, 64)
    with pytest.raises(ValueError, match="space"):
        tune_frame_agent(agents, [FrameClip(planes, other)], [FrameClip(planes, other)])


def test_a_real_table_is_the_real_encoder_s_rate_and_drop_at_each_qp_i():
    from dmic_core.agents.env import RealEnv
    from dmic_core.agents.source_task import LumenThresholdSegmenter
    from dmic_core.datasets.phantom import generate_phantom

    space = ActionSpace("tiny-frame", qp_i=(26, 34), fg_offsets=(0, 2), bg_offsets=(2, 6))
    vol, _ = generate_phantom(5990, n_slices=3, size=192)
    env = RealEnv(vol, LumenThresholdSegmenter(), space=space)
    torch.manual_seed(0)
    agents = DMICAgents(space).eval()
    table = real_frame_table(env, agents, name="tiny", decide_lambda=5.0)
    assert table.qp_i == (26, 34) and table.meta["reference"] == env.reference.kind
    assert table.rate[1] < table.rate[0]                               # coarser I frame, fewer bits
    again = env.step(34, agents.decide(vol.hu, env.mask, 5.0, qp_i=34).offsets, 5.0)
    assert table.rate[1] == pytest.approx(again.rate) and table.drop[1] == pytest.approx(again.drop)
