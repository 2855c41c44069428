"""Agents: action spaces, policy structure and sizes, tuning strategies, hand-crafted maps, decisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmic_core.agents.dmic import DMICAgents
from dmic_core.agents.features import clip_state, ctu_observation
from dmic_core.agents.handcrafted import HANDCRAFTED, handcrafted_offsets, offset_curve
from dmic_core.agents.policies import count_parameters
from dmic_core.agents.spaces import EXTENDED, PAPER, get_space
from dmic_core.agents.strategies import STRATEGIES, apply_strategy, param_groups
from dmic_core.codecs.qp import dmic_frame_qps
from dmic_core.maps import foreground_ctus


@pytest.fixture(scope="module")
def agents() -> DMICAgents:
    torch.manual_seed(0)
    return DMICAgents(PAPER).eval()


def _clip(n=5, h=200, w=136, seed=0):
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 1200, (n, h, w)).astype(np.int16)
    mask = np.zeros((n, h, w), np.uint8)
    mask[:, 70:74, 10:120] = 1
    mask[2, 150:152, 3:5] = 1
    return hu, mask


# ---------------------------------------------------------------------------------- spaces
def test_paper_space_is_the_papers():
    assert PAPER.qp_i == tuple(range(14, 38))
    assert PAPER.fg_offsets == (-2, 0, 2) and PAPER.bg_offsets == (2, 4, 6, 8)
    assert PAPER.offsets == (-2, 0, 2, 4, 6, 8)
    np.testing.assert_array_equal(PAPER.frame_qps(22, 10), dmic_frame_qps(22, 10))
    table = PAPER.valid_offset_table()
    assert table[1].tolist() == [True, True, True, False, False, False]   # foreground
    assert table[0].tolist() == [False, False, True, True, True, True]    # background
    assert PAPER.reachable_qps() == tuple(range(12, 54))
    assert get_space("paper") is PAPER


def test_extended_space_contains_paper():
    assert set(PAPER.qp_i) < set(EXTENDED.qp_i)
    assert set(PAPER.offsets) < set(EXTENDED.offsets)
    assert max(EXTENDED.bg_offsets) >= 16
    with pytest.raises(ValueError):
        get_space("nope")


def test_a_restricted_space_masks_foreground_choices_and_keeps_the_network_s_outputs(tmp_path):
    capped = PAPER.restricted((-2, 0))
    assert capped.fg_offsets == (-2, 0) and capped.bg_offsets == PAPER.bg_offsets and capped.offsets == PAPER.offsets
    assert get_space(capped.name) == capped and capped.name == "paper/fg-2,+0"
    assert EXTENDED.restricted((-4, -2, 0)).offsets == EXTENDED.offsets
    with pytest.raises(ValueError, match="not a non-empty subset"):
        PAPER.restricted((4,))
    with pytest.raises(ValueError, match="would drop a CTU output category"):
        PAPER.restricted((0,))  # -2 is a foreground-only output: the head would shrink
    # the same networks: background CTUs decide as before, foreground CTUs never take +2, and the
    # restriction survives a checkpoint
    torch.manual_seed(3)
    free = DMICAgents(PAPER).eval()
    free.ctu.a2c.actor.out.bias.data[PAPER.offsets.index(2)] += 50.0  # +2 preferred wherever it is allowed
    free.save(tmp_path / "free.pt", half=False)
    hu, mask = _clip()
    before = free.decide(hu, mask, 5.0)
    assert (before.offsets[before.foreground] == 2).all()
    restricted = DMICAgents.load(tmp_path / "free.pt").restrict_foreground((-2, 0))
    restricted.save(tmp_path / "capped.pt", half=False)
    after = DMICAgents.load(tmp_path / "capped.pt").eval().decide(hu, mask, 5.0)
    assert after.qp_i == before.qp_i and DMICAgents.load(tmp_path / "capped.pt").space == capped
    assert set(after.offsets[after.foreground].tolist()) <= {-2, 0}
    np.testing.assert_array_equal(after.offsets[~after.foreground], before.offsets[~before.foreground])


def test_agents_that_drop_small_regions_leave_a_blob_s_ctu_to_the_background_across_a_checkpoint(tmp_path):
    torch.manual_seed(4)
    plain = DMICAgents(PAPER).eval()
    plain.save(tmp_path / "plain.pt", half=False)
    assert "region" not in torch.load(tmp_path / "plain.pt", weights_only=True)  # reads as before
    hu, mask = _clip()  # a 2,200-voxel bar in every frame and a 4-voxel blob in frame 2, CTU (2, 0)
    before = plain.decide(hu, mask, 5.0)
    assert before.foreground[2, 2, 0] and before.offsets[2, 2, 0] in PAPER.fg_offsets
    cleaned = DMICAgents.load(tmp_path / "plain.pt").drop_small_regions(10)
    cleaned.save(tmp_path / "cleaned.pt", half=False)
    loaded = DMICAgents.load(tmp_path / "cleaned.pt").eval()
    assert loaded.min_component_voxels == 10 and DMICAgents.load(tmp_path / "plain.pt").min_component_voxels == 0
    after = loaded.decide(hu, mask, 5.0)
    assert not after.foreground[2, 2, 0] and after.offsets[2, 2, 0] in PAPER.bg_offsets
    # the bar is kept whole, so every other CTU is classed as before
    others = np.ones_like(after.foreground)
    others[2, 2, 0] = False
    np.testing.assert_array_equal(after.foreground[others], before.foreground[others])
    with pytest.raises(ValueError, match=">= 0"):
        plain.drop_small_regions(-1)


def test_offset_projection_and_clipping():
    fg = np.array([True, True, False, False])
    out = PAPER.project_offsets(np.array([5.0, -7.0, -3.0, 100.0]), fg)
    assert out.tolist() == [2, -2, 2, 8]
    assert PAPER.is_valid_offset_map(out, fg)
    assert not PAPER.is_valid_offset_map(np.array([4, 0, 2, 2]), fg)
    qmap = PAPER.qp_map(37, np.full((9, 1, 1), 8))
    assert qmap.max() == 53 and PAPER.qp_map(37, np.full((9, 1, 1), 8), qp_max=51).max() == 51
    with pytest.raises(ValueError):
        PAPER.ctu_action_of(np.array([3]))


# -------------------------------------------------------------------------------- policies
def test_parameter_counts_keep_paper_proportions(agents):
    for agent in (agents.frame, agents.ctu):
        c = count_parameters(agent)
        assert c["fc"] == 918_016                       # Linear(3585 -> 256), as the paper's FC
        assert agent.fe.features_dim == 3584
        bodies = sum(p.numel() for h in (agent.a2c.actor, agent.a2c.critic) for p in h.body.parameters())
        assert bodies == 28_784                          # the paper's A2C count
        assert 100_000 <= c["fe"] <= 130_000             # paper FE: 112,192
        assert 0.02 <= c["a2c"] / c["total"] <= 0.035    # paper: 2.7%
        assert c["total"] == c["fe"] + c["fc"] + c["a2c"]


def test_adapters_sizes_and_identity_at_insertion(agents):
    a = DMICAgents(PAPER)
    hu, mask = _clip()
    before = a.decide(hu, mask, 5.0)
    for kind in ("fc", "actor", "critic"):
        a.ctu.add_adapter(kind)
        a.frame.add_adapter(kind)
    c = count_parameters(a.ctu)
    assert c["adapter.fc"] == 131_584                    # two Linear(256, 256), as the paper's AdapterV1
    assert c["adapter.actor"] == c["adapter.critic"] < 6_000
    after = a.decide(hu, mask, 5.0)
    assert after.qp_i == before.qp_i
    np.testing.assert_array_equal(after.offsets, before.offsets)


def test_decision_shapes_and_valid_actions(agents):
    hu, mask = _clip()
    for det in (True, False):
        d = agents.decide(hu, mask, 10.0, deterministic=det, generator=torch.Generator().manual_seed(1))
        assert d.offsets.shape == d.qp_map.shape == d.foreground.shape == (5, 4, 3)
        assert d.qp_i in PAPER.qp_i
        np.testing.assert_array_equal(d.foreground, foreground_ctus(mask))
        assert PAPER.is_valid_offset_map(d.offsets, d.foreground)
        np.testing.assert_array_equal(d.qp_map, PAPER.qp_map(d.qp_i, d.offsets))
    d = agents.decide(hu, mask, 10.0, qp_i=30)
    assert d.qp_i == 30 and d.frame_qps.tolist() == dmic_frame_qps(30, 5).tolist()


def test_invalid_ctu_actions_are_masked(agents):
    hu, mask = _clip()
    _, base = clip_state(hu, mask)
    obs = ctu_observation(base, dmic_frame_qps(22, 5), 3.0)
    with torch.no_grad():
        logits, value = agents.ctu(obs.planes, obs.context, agents.ctu_action_mask(obs.foreground))
    assert logits.shape == (5 * 4 * 3, PAPER.n_ctu_actions) and value.shape == (5 * 4 * 3,)
    valid = torch.as_tensor(PAPER.ctu_action_mask(obs.foreground.numpy()))
    assert torch.isinf(logits[~valid]).all() and torch.isfinite(logits[valid]).all()


def test_checkpoint_roundtrip(tmp_path):
    a = DMICAgents(EXTENDED)
    a.ctu.add_adapter("fc")
    a.save(tmp_path / "a.pt", meta={"note": "x"})
    b = DMICAgents.load(tmp_path / "a.pt")
    assert b.space == EXTENDED and b.ctu.adapter_kinds() == ["fc"] and b.meta["note"] == "x"
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v2, v.half().float())
    assert (tmp_path / "a.pt").stat().st_size < 5_000_000


# ------------------------------------------------------------------------------ strategies
EXPECTED_TRAINABLE = {
    "pretrained": set(), "a2c": {"a2c"}, "a2c_fc": {"a2c", "fc"}, "full": {"fe", "fc", "a2c"},
    "adapterv1": {"adapters.fc"}, "adapterv1_a2c": {"adapters.fc", "a2c"},
    "adapter": {"adapters.actor", "adapters.critic"}, "adapter_critic": {"adapters.actor", "a2c.critic"},
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_training_step_changes_only_trainable(name):
    torch.manual_seed(0)
    a = DMICAgents(PAPER)
    groups = param_groups(a.frame, a.ctu, name, lr_frame=1e-2, lr_ctu=1e-2)
    for agent in (a.frame, a.ctu):
        trainable = {k for k, p in agent.named_parameters() if p.requires_grad}
        expected = {k for k, _ in agent.named_parameters()
                    if any(k.startswith(prefix + ".") for prefix in EXPECTED_TRAINABLE[name])}
        assert trainable == expected
    if name == "pretrained":
        assert groups == []
        return
    assert [g["lr"] for g in groups] == [1e-2, 1e-2] and [g["name"] for g in groups] == ["frame", "ctu"]
    before = {k: v.clone() for k, v in a.state_dict().items()}
    opt = torch.optim.Adam(groups)
    hu, mask = _clip(n=3, h=64, w=128)
    fplanes, base = clip_state(hu, mask)
    obs = ctu_observation(base, dmic_frame_qps(22, 3), 3.0)
    for _ in range(2):  # two steps: zero-initialised adapter outputs make the first step sparse
        lf, vf = a.frame(fplanes[None], torch.tensor([0.5]))
        lc, vc = a.ctu(obs.planes, obs.context, a.ctu_action_mask(obs.foreground))
        loss = -torch.log_softmax(lf, -1)[:, 3].sum() + vf.square().sum() \
            - torch.log_softmax(lc, -1)[:, 2].sum() + vc.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = a.state_dict()
    for agent_name, agent in (("frame", a.frame), ("ctu", a.ctu)):
        changed = False
        for k, p in agent.named_parameters():
            key = f"{agent_name}.{k}"
            if p.requires_grad:
                changed |= not torch.equal(before[key], after[key])
            else:
                assert torch.equal(before[key], after[key]), key
        assert changed


def test_apply_strategy_rejects_unknown(agents):
    with pytest.raises(ValueError):
        apply_strategy(agents.frame, "bogus")


# ------------------------------------------------------------------------------ hand-crafted
@pytest.mark.parametrize("method", HANDCRAFTED)
def test_handcrafted_monotone_and_valid(method):
    ratios = np.linspace(0, 1, 101)
    curve = offset_curve(ratios, method, ratio_saturation=1.0)
    assert np.all(np.diff(curve) <= 1e-12) and curve[0] == 8 and curve[-1] == -2
    n, h, w = 4, 128, 192
    mask = np.zeros((n, h, w), np.uint8)
    for c in range(3):  # CTU (0, c): growing mask ratio left to right; column 2 of row 1 empty
        mask[:, : 8 + 28 * c, 64 * c: 64 * c + 64] = 1
    off = handcrafted_offsets(mask, method, strength=1.0, ratio_saturation=1.0)
    assert off.shape == (n, 2, 3)
    assert PAPER.is_valid_offset_map(off, foreground_ctus(mask))
    assert np.all(np.diff(off[:, 0, :], axis=1) <= 0)
    assert np.all(off[:, 1, :] == 8)
    weak = handcrafted_offsets(mask, method, strength=0.4, ratio_saturation=1.0)
    assert np.all(weak <= off)


# ------------------------------------------------------------------- environment and training
from dmic_core.agents.spaces import ActionSpace  # noqa: E402

#: A tiny action space: 3 uniform encodes make its whole surrogate.
TINY = ActionSpace("tiny", qp_i=(30,), fg_offsets=(0, 2), bg_offsets=(2, 6))


@pytest.fixture(scope="module")
def tiny_env():
    from dmic_core.agents.env import ClipCache, RealEnv
    from dmic_core.agents.source_task import LumenThresholdSegmenter
    from dmic_core.datasets.phantom import generate_phantom
    from dmic_core.evaluation import make_reference

    vol, _ = generate_phantom(5990, n_slices=3, size=192)
    seg = LumenThresholdSegmenter()
    ref = make_reference(seg, vol)
    cache = ClipCache.build(vol, seg, ref, space=TINY)
    return vol, seg, ref, cache, RealEnv(vol, seg, reference=ref, space=TINY)


def test_surrogate_matches_real_encode_on_tiny_clip(tiny_env):
    """Through :func:`surrogate_error`, the measurement behind docs/agents.md's error table."""
    from dmic_core.agents.env import random_decision, surrogate_error

    vol, seg, ref, cache, env = tiny_env
    assert len(cache.keys) == 3
    fg = foreground_ctus(ref.roi)
    assert 0 < fg.mean() < 1
    rng = np.random.default_rng(3)
    zero = np.zeros(fg.shape, np.int32)
    decisions = [(30, zero)] + [random_decision(TINY, fg, rng) for _ in range(2)]
    uniform, *mixed = surrogate_error(vol, seg, ref, cache, decisions, lam=10.0, space=TINY)
    # uniform decision: the surrogate is the real encode itself (bits, mIoU and PSNR alike)
    assert uniform["bits_rel_err"] == pytest.approx(0.0, abs=1e-6)
    assert uniform["miou_err"] == pytest.approx(0.0, abs=1e-12)
    assert uniform["psnr_sur"] == pytest.approx(uniform["psnr_real"], rel=1e-6)
    # random mixed maps: stated tolerance 15% bits, 0.02 mIoU (measured errors: docs/agents.md)
    for row in mixed:
        assert abs(row["bits_rel_err"]) < 0.15
        assert abs(row["miou_err"]) < 0.02


def test_difference_rewards(tiny_env):
    vol, seg, ref, cache, env = tiny_env
    fg = foreground_ctus(ref.roi)
    off = np.where(fg, 0, 6).astype(np.int32)
    r, per_ctu = cache.ctu_rewards(30, off, 5.0, baseline_offset=0)
    assert r == pytest.approx(cache.evaluate(30, off, 5.0).reward)
    assert per_ctu.shape == fg.shape
    assert np.all(per_ctu[fg] == 0)           # at the baseline offset: no effect by definition
    assert np.all(per_ctu[~fg] > 0) or cache.original_miou - cache.evaluate(30, off, 5.0).miou > 0
    with pytest.raises(ValueError):
        cache.key_index(22, off)


@pytest.mark.parametrize("advantage", ["sampled", "all_actions", "greedy"])
@pytest.mark.parametrize("strategy", ["full", "a2c"])
def test_a2c_trains_and_resumes(tiny_env, tmp_path, strategy, advantage):
    from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip

    vol, seg, ref, cache, env = tiny_env
    clip = TrainClip.from_volume(vol.hu, ref.roi, cache)
    torch.manual_seed(0)
    agents = DMICAgents(TINY)
    cfg = A2CConfig(iterations=2, batch_clips=2, strategy=strategy, ctu_grad_samples=16, checkpoint_every=1,
                    advantage=advantage)
    frozen = {k: v.clone() for k, v in agents.frame.fe.state_dict().items()}
    trainer = A2CTrainer(agents, [clip], cfg, tmp_path / "agents.pt")
    hist = trainer.train(log_every=1)
    assert len(hist) == 2 and np.isfinite(hist[-1]["reward"])
    for k, v in agents.frame.fe.state_dict().items():
        assert torch.equal(v, frozen[k]) == (strategy == "a2c")
    loaded = DMICAgents.load(tmp_path / "agents.pt")
    assert loaded.meta["strategy"] == strategy and loaded.meta["iteration"] == 2
    cfg2 = A2CConfig(iterations=3, batch_clips=2, strategy=strategy, ctu_grad_samples=16)
    again = A2CTrainer(DMICAgents(TINY), [clip], cfg2, tmp_path / "agents.pt")
    assert again.resume() and again.iteration == 2
    again.train(log_every=1)
    assert again.iteration == 3


def test_training_refuses_agents_that_decide_on_a_cleaned_region(tiny_env):
    """Training clips carry the whole mask; agents that drop small regions would learn on another
    region than they decide on, so the trainer says so instead of training them silently."""
    from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip
    from dmic_core.errors import DmicInputError

    vol, seg, ref, cache, env = tiny_env
    clip = TrainClip.from_volume(vol.hu, ref.roi, cache)
    with pytest.raises(DmicInputError, match="at least 500 voxels"):
        A2CTrainer(DMICAgents(TINY).drop_small_regions(500), [clip], A2CConfig(iterations=1))
    assert A2CTrainer(DMICAgents(TINY).drop_small_regions(0), [clip], A2CConfig(iterations=1)).iteration == 0


def test_action_values_agree_with_the_surrogate(tiny_env):
    """Every action value is the surrogate's clip reward of that action (no approximation)."""
    vol, seg, ref, cache, env = tiny_env
    fg = foreground_ctus(ref.roi)
    off = np.where(fg, 0, 6).astype(np.int32)
    q = cache.ctu_action_values(30, off, 5.0, TINY.offsets)
    taken = np.searchsorted(TINY.offsets, off)
    r = cache.evaluate(30, off, 5.0).reward
    assert np.allclose(np.take_along_axis(q, taken[..., None], -1)[..., 0], r)
    f, row, col = np.argwhere(~fg)[0]
    moved = off.copy()
    moved[f, row, col] = 2
    assert q[f, row, col, TINY.offsets.index(2)] == pytest.approx(cache.evaluate(30, moved, 5.0).reward)
    assert cache.frame_action_values((30,), off, 5.0) == pytest.approx([r])


def test_edge_steps_and_their_one_ctu_change():
    from dmic_core.agents.env import edge_steps_change, offset_edge_steps

    off = np.array([[[0, 4], [8, 8]]])  # edges: |0-4| + |8-8| across, |0-8| + |4-8| down
    assert offset_edge_steps(off) == 4 + 0 + 8 + 4
    rng = np.random.default_rng(0)
    off = rng.choice([-2, 0, 4, 12], size=(3, 4, 5))
    for cand in (-2, 0, 12):
        change = edge_steps_change(off, cand)
        for f, r, c in np.ndindex(off.shape):
            moved = off.copy()
            moved[f, r, c] = cand
            assert change[f, r, c] == offset_edge_steps(moved) - offset_edge_steps(off)


def test_mixed_qp_rate_correction_prices_every_surrogate_view_alike(tiny_env):
    """With ``edge_rate`` set, a decision costs ``kappa * 2^(-(QP_I - 32) / c) * edge_steps`` bits
    more in ``evaluate``, and the action values and difference rewards stay the exact
    counterfactuals of ``evaluate`` (one CTU moved, the rest kept)."""
    import dataclasses

    from dmic_core.agents.env import offset_edge_steps

    vol, seg, ref, cache, env = tiny_env
    corrected = dataclasses.replace(cache, edge_rate=(50.0, 6.0))
    fg = foreground_ctus(ref.roi)
    off = np.where(fg, 0, 6).astype(np.int32)
    assert offset_edge_steps(off) > 0  # the decision is mixed: the correction applies
    plain, more = cache.evaluate(30, off, 5.0), corrected.evaluate(30, off, 5.0)
    assert more.bits - plain.bits == pytest.approx(50.0 * 2.0 ** (2 / 6) * offset_edge_steps(off))
    uniform = np.full_like(off, 2)
    assert corrected.evaluate(30, uniform, 5.0).bits == cache.evaluate(30, uniform, 5.0).bits
    q = corrected.ctu_action_values(30, off, 5.0, TINY.offsets)
    _, diff = corrected.ctu_rewards(30, off, 5.0, baseline_offset=2)
    for f, row, col in np.argwhere(np.ones_like(fg))[:6]:
        for cand in TINY.offsets:
            moved = off.copy()
            moved[f, row, col] = cand
            assert q[f, row, col, TINY.offsets.index(cand)] == pytest.approx(corrected.evaluate(30, moved, 5.0).reward)
        base = off.copy()
        base[f, row, col] = 2
        assert diff[f, row, col] == pytest.approx((more.reward - corrected.evaluate(30, base, 5.0).reward) * off.size)


def test_rate_cap_prices_coarser_ctus_at_the_cap_and_keeps_their_accuracy(tiny_env):
    import dataclasses

    vol, seg, ref, cache, env = tiny_env
    capped = dataclasses.replace(cache, rate_qp_cap=32)  # QP_I 30: offset 6 is priced as offset 2
    fg = foreground_ctus(ref.roi)
    coarse, at_cap = np.where(fg, 0, 6).astype(np.int32), np.where(fg, 0, 2).astype(np.int32)
    out = capped.evaluate(30, coarse, 5.0)
    assert out.bits == pytest.approx(cache.evaluate(30, at_cap, 5.0).bits)
    assert out.bits > cache.evaluate(30, coarse, 5.0).bits
    assert out.miou == cache.evaluate(30, coarse, 5.0).miou  # accuracy still from the CTUs' own QP
    assert capped.evaluate(30, at_cap, 5.0).bits == cache.evaluate(30, at_cap, 5.0).bits
    q = capped.ctu_action_values(30, coarse, 5.0, TINY.offsets)
    f, row, col = np.argwhere(~fg)[0]
    moved = coarse.copy()
    moved[f, row, col] = 2
    assert q[f, row, col, TINY.offsets.index(2)] == pytest.approx(capped.evaluate(30, moved, 5.0).reward)


def test_greedy_update_finds_the_rate_only_optimum(tiny_env):
    """At lambda = 0 the reward is rate alone: after a short greedy training every CTU takes the
    coarsest offset its class allows."""
    from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip
    from dmic_core.agents.features import ctu_observation

    vol, seg, ref, cache, env = tiny_env
    clip = TrainClip.from_volume(vol.hu, ref.roi, cache)
    torch.manual_seed(0)
    agents = DMICAgents(TINY)
    cfg = A2CConfig(iterations=40, batch_clips=2, lambda_zero_prob=1.0, ctu_grad_samples=64, advantage="greedy",
                    lr_ctu=1e-3)
    trainer = A2CTrainer(agents, [clip], cfg)
    trainer.train(log_every=10)
    obs = ctu_observation(clip.ctu_base, TINY.frame_qps(30, clip.ctu_base.shape[0]), 0.0)
    with torch.no_grad():
        logits, _ = agents.ctu(obs.planes, obs.context, trainer._valid[obs.foreground.long()])
    off = TINY.offset_of(logits.argmax(-1).numpy()).reshape(clip.foreground.shape)
    assert np.all(off[clip.foreground] == max(TINY.fg_offsets))
    assert np.all(off[~clip.foreground] == max(TINY.bg_offsets))


def test_handcrafted_shapes_give_five_different_maps():
    """Issue 13: linear, exp and square once rounded to bit-identical maps on coronary masks.
    On a phantom's coronary label every pair of shapes must now differ on some CTU."""
    from dmic_core.datasets.phantom import generate_phantom

    _, label = generate_phantom(9100, n_slices=48, size=512)
    z = int(np.argmax(label.sum(axis=(1, 2))))
    mask = label[max(0, z - 8): z + 8] > 0
    maps = {m: handcrafted_offsets(mask, m) for m in HANDCRAFTED}
    fg = foreground_ctus(mask)
    for a in HANDCRAFTED:
        assert PAPER.is_valid_offset_map(maps[a], fg)
        assert np.all(maps[a][~fg] == max(PAPER.bg_offsets))
        for b in HANDCRAFTED:
            if a < b:
                assert not np.array_equal(maps[a], maps[b]), (a, b)
    # concave shapes protect more: log's mean foreground offset is below exp's
    assert maps["log"][fg].mean() < maps["exp"][fg].mean()


def test_checkpoint_selection_prefers_behaving_iterations(tiny_env):
    """A slightly higher validation reward does not win over decisions that behave."""
    from dmic_core.agents.a2c import A2CConfig, A2CTrainer, TrainClip

    vol, seg, ref, cache, env = tiny_env
    trainer = A2CTrainer(DMICAgents(TINY), [TrainClip.from_volume(vol.hu, ref.roi, cache)], A2CConfig())
    trainer.val_scores = [(100, -0.30, True), (200, -0.25, False), (300, -0.28, True)]
    assert trainer.best_score == (300, -0.28)
    trainer.val_scores = [(100, -0.30, False), (200, -0.25, False)]
    assert trainer.best_score == (200, -0.25)  # none behaves: the best reward, as before
    stats = trainer.evaluate_greedy((0.0, 5.0))
    assert stats["greedy_behaves"] in (0.0, 1.0)


def test_behaviour_properties_flag_what_they_should():
    """The helpers that select checkpoints (behaviour.py) catch each violation, and only those."""
    from dmic_core.agents.behaviour import frames_with_foreground_coarser, lambda0_is_coarsest, mean_qp_rises

    assert lambda0_is_coarsest(37, range(14, 38)) and not lambda0_is_coarsest(33, range(14, 38))
    # given out of order: sorted by lambda first; the rise from lambda 1 to 10 is the only one
    assert mean_qp_rises([10.0, 0.0, 1.0, 100.0], [31.0, 37.0, 30.0, 25.0]) == [(1.0, 10.0)]
    assert mean_qp_rises([0.0, 1.0], [37.0, 37.0]) == []
    fg = np.zeros((3, 2, 2), bool)
    fg[:2, 0, 0] = True  # frames 0 and 1 hold foreground; frame 2 only background
    off = np.full((3, 2, 2), 4)
    off[0, 0, 0] = -2  # finer foreground: fine
    off[1, 0, 0] = 6  # coarser than the background's +4: a violation
    assert frames_with_foreground_coarser(off, fg) == (1, 2)
