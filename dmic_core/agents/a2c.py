"""Advantage actor-critic for the hierarchical agents, on surrogate (cached) clips.

One *episode* is one decision for one clip at one lambda (the paper's setting: the agents choose
once per clip). Per iteration:

1. draw ``batch_clips`` clips and a lambda for each (0 with probability ``lambda_zero_prob``,
   else log-uniform in ``[lambda_min, lambda_max]``);
2. the frame agent samples QP_I for each clip; the CTU agent samples every CTU's offset from the
   offsets its class allows (invalid ones masked);
3. rewards from the :class:`~dmic_core.agents.env.ClipCache`: the clip reward
   ``-(R + lambda D)`` for the frame agent, and each CTU's *difference reward* (its own effect on
   the clip reward) for the CTU agent;
4. losses per agent: an actor term chosen by ``advantage`` (the paper's sampled
   ``-A log pi(a|s)``, ``A = r - V(s)`` detached; or, from the surrogate's value of every action,
   the expected gradient or the cross-entropy to the best action, the default: see
   :data:`~dmic_core.agents.strategies.ADVANTAGES`) ``+ value_coef (V(s) - r)^2 - entropy_coef H``,
   rewards divided by ``1 + lambda / reward_scale_lambda`` (a positive factor per episode: each lambda's optimum is unchanged, but lambda = 100 episodes,
   whose rewards are ~30x larger, no longer drown the others); the CTU policy gradient runs on a
   random subset of ``ctu_grad_samples`` CTUs per iteration (all CTUs act; fewer backpropagate, for speed);
5. gradients clipped per agent (``max_grad_norm``), one Adam step with one parameter group per
   agent (learning rates 1e-3 frame, 1e-4 CTU as the paper; never reset together).

Checkpoints (agents + optimiser + RNG + history) are written every ``checkpoint_every``
iterations and on cancel; :meth:`A2CTrainer.train` resumes from one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from dmic_core.agents.behaviour import lambda0_is_coarsest, mean_qp_rises
from dmic_core.agents.dmic import DMICAgents
from dmic_core.agents.env import ClipCache
from dmic_core.agents.features import clip_state, ctu_observation, lambda_context
from dmic_core.agents.strategies import ADVANTAGES, STRATEGIES, param_groups
from dmic_core.maps import foreground_ctus


@dataclass
class A2CConfig:
    """Everything that defines an A2C run (stored in its checkpoints)."""

    iterations: int = 1000
    batch_clips: int = 4
    lr_frame: float = 1e-3
    lr_ctu: float = 1e-4
    value_coef: float = 0.5
    entropy_coef_frame: float = 0.01
    entropy_coef_ctu: float = 0.01
    max_grad_norm: float = 0.5
    lambda_min: float = 0.3
    lambda_max: float = 100.0
    lambda_zero_prob: float = 0.1
    ctu_grad_samples: int = 512
    ctu_baseline_offset: int = 0
    reward_scale_lambda: float = 10.0
    advantage: str = "greedy"
    greedy_smoothing: float = 0.05
    strategy: str = "full"
    seed: int = 0
    checkpoint_every: int = 100
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; known: {list(STRATEGIES)}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"unknown advantage {self.advantage!r}; known: {list(ADVANTAGES)}")
        if self.iterations < 0 or self.batch_clips < 1:
            raise ValueError("iterations must be >= 0 and batch_clips >= 1")


@dataclass
class TrainClip:
    """A training clip: its surrogate and the agents' states (computed once)."""

    cache: ClipCache
    frame_planes: torch.Tensor    # (F, 5, 64, 64)
    ctu_base: torch.Tensor        # (F, R, C, 5, 16, 16)
    foreground: np.ndarray        # (F, R, C)
    name: str = "clip"

    @classmethod
    def from_volume(cls, hu: np.ndarray, roi: np.ndarray, cache: ClipCache,
                    name: str = "clip") -> "TrainClip":
        fp, base = clip_state(hu, roi)
        return cls(cache, fp, base, foreground_ctus(roi), name)


class StepStats(NamedTuple):
    reward: float
    rate: float
    drop: float
    qp_i: float
    mean_offset: float
    loss_frame: float
    loss_ctu: float
    entropy_frame: float
    entropy_ctu: float
    value_err_frame: float
    gain: float


def _expected_advantage(logp: torch.Tensor, q: torch.Tensor, episode: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_a pi(a|s) A(a)`` per state, differentiable in ``pi``, with ``A = Q - E_pi[Q]`` over the
    valid actions (finite logits; ``q`` of the others is ignored).

    Each episode's advantages are divided by their *policy-weighted* spread,
    ``sqrt(E_s E_pi[A^2])`` (states of one episode share it: ``episode`` gives each state's
    episode; ``None``: one state per episode), plus 1% of their plain spread. Why weighted: once
    the policy has narrowed down to a few good actions, the differences between *those* (e.g.
    QP_I 36 against 37 at lambda = 0: 1% of the rate) still weigh as much as the early choice
    between good and bad ones did, and the entropy bonus cannot keep the policy off the optimum.
    """
    valid = torch.isfinite(logp)
    p = torch.where(valid, logp.exp(), torch.zeros_like(logp)).detach()
    q = torch.where(valid, q, torch.zeros_like(q))
    adv = (q - (p * q).sum(-1, keepdim=True)) * valid
    if episode is None:
        episode = torch.arange(adv.shape[0])
    spread = torch.zeros(int(episode.max()) + 1)
    for e in torch.unique(episode):
        rows = episode == e
        weighted = (p[rows] * adv[rows].square()).sum(-1).mean().sqrt()
        vals = adv[rows][valid[rows]]
        plain = vals.std() if vals.numel() > 1 else torch.tensor(0.0)
        spread[e] = weighted + 0.01 * plain
    adv = adv / (spread[episode][:, None] + 1e-8)
    return (torch.where(valid, logp.exp(), torch.zeros_like(logp)) * adv).sum(-1)


def best_response_loss(logp: torch.Tensor, q: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy of the policy to the best valid action of each state (ties: the first),
    ``smoothing`` of the target spread evenly over the valid actions."""
    valid = torch.isfinite(logp)
    best = torch.where(valid, q, torch.full_like(q, -torch.inf)).argmax(-1)
    target = valid.float() * (smoothing / valid.sum(-1, keepdim=True).clamp(min=1))
    target[torch.arange(len(best)), best] += 1.0 - smoothing
    return -(target * torch.where(valid, logp, torch.zeros_like(logp))).sum(-1)


def _masked_entropy(logits: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(logits)
    safe = torch.where(finite, logp, torch.zeros_like(logp))  # no 0 * -inf, in either pass
    return -(safe.exp() * safe * finite).sum(-1)


class A2CTrainer:
    """Trains (part of) a :class:`DMICAgents` pair on surrogate clips with A2C.

    Args:
        agents: the agents (modified in place).
        clips: training clips.
        config: the run's settings; ``config.strategy`` decides what is trained.
        out: checkpoint path (``.pt``); a ``.log.jsonl`` history is written next to it.
    """

    def __init__(self, agents: DMICAgents, clips: Sequence[TrainClip], config: A2CConfig,
                 out: str | Path | None = None, val_clips: Sequence[TrainClip] = ()):
        if not clips:
            raise ValueError("no training clips")
        if agents.min_component_voxels:
            from dmic_core.errors import DmicInputError

            raise DmicInputError(
                f"these agents protect only the mask's components of at least {agents.min_component_voxels} "
                "voxels, but training clips carry the whole mask (states and surrogate): they would learn "
                "on another region than they decide on. Train without the rule "
                "(DMICAgents.drop_small_regions(0)) and set it again afterwards")
        shapes = {c.frame_planes.shape for c in clips}
        if len(shapes) != 1:
            raise ValueError(f"training clips must share one shape, got {sorted(shapes)}")
        self.agents = agents
        self.clips = list(clips)
        self.config = config
        self.out = Path(out) if out is not None else None
        self.groups = param_groups(agents.frame, agents.ctu, config.strategy, config.lr_frame, config.lr_ctu)
        self.optimizer = torch.optim.Adam(self.groups) if self.groups else None
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.rng = np.random.default_rng(config.seed)
        self.torch_gen = torch.Generator().manual_seed(config.seed)
        self.space = agents.space
        self._valid = torch.as_tensor(self.space.valid_offset_table())
        self._baseline_cache: dict[tuple[int, float], float] = {}
        #: Validation clips (never trained on): with them, every greedy evaluation also scores the
        #: agents there and the best-scoring iteration is saved as ``<out>.best.pt``.
        self.val_clips = list(val_clips)
        self.val_scores: list[tuple] = []  # (iteration, validation greedy reward, decisions behave)

    # ------------------------------------------------------------------------------- sampling
    def sample_lambdas(self, n: int) -> np.ndarray:
        c = self.config
        lam = np.exp(self.rng.uniform(math.log(c.lambda_min), math.log(c.lambda_max), n))
        lam[self.rng.random(n) < c.lambda_zero_prob] = 0.0
        return lam

    def step(self) -> StepStats:
        """One A2C update on a fresh batch of episodes."""
        c = self.config
        b = c.batch_clips
        idx = self.rng.integers(0, len(self.clips), b)
        clips = [self.clips[i] for i in idx]
        lam = self.sample_lambdas(b)
        ctx = lambda_context(lam)
        self.agents.train()
        # frame agent
        fplanes = torch.stack([cl.frame_planes for cl in clips])
        f_logits, f_value = self.agents.frame(fplanes, ctx)
        f_logp_all = torch.log_softmax(f_logits, -1)
        f_act = torch.multinomial(f_logp_all.detach().exp(), 1, generator=self.torch_gen).squeeze(-1)
        qp_is = self.space.qp_i_of(f_act.numpy())
        # CTU agent: act on every CTU without gradients, backpropagate a subset
        obs = [ctu_observation(cl.ctu_base, self.space.frame_qps(int(q), cl.ctu_base.shape[0]), float(l))
               for cl, q, l in zip(clips, qp_is, lam)]
        planes = torch.cat([o.planes for o in obs])
        context = torch.cat([o.context for o in obs])
        fg = torch.cat([o.foreground for o in obs])
        amask = self._valid[fg.long()]
        with torch.no_grad():
            logits_all, _ = self.agents.ctu(planes, context, amask)
            c_act = torch.multinomial(torch.softmax(logits_all, -1), 1, generator=self.torch_gen).squeeze(-1)
        offsets = self.space.offset_of(c_act.numpy())
        # rewards
        clip_r = np.zeros(b)
        ctu_r = np.zeros(len(c_act))
        ctu_scale = np.ones(len(c_act))
        rates, drops, gains = np.zeros(b), np.zeros(b), np.zeros(b)
        start = 0
        per_clip_offsets = []
        for j, cl in enumerate(clips):
            shape = cl.foreground.shape
            n = int(np.prod(shape))
            off = offsets[start:start + n].reshape(shape)
            per_clip_offsets.append(off)
            r, rc = cl.cache.ctu_rewards(int(qp_is[j]), off, float(lam[j]), c.ctu_baseline_offset)
            out = cl.cache.evaluate(int(qp_is[j]), off, float(lam[j]))
            clip_r[j], rates[j], drops[j] = r, out.rate, out.drop
            gains[j] = r - self.baseline_reward(cl, float(lam[j]))
            ctu_r[start:start + n] = rc.reshape(-1)
            if c.reward_scale_lambda > 0:
                ctu_scale[start:start + n] = 1.0 + lam[j] / c.reward_scale_lambda
            start += n
        # losses: rewards divided by 1 + lambda / reward_scale_lambda (a positive factor per episode,
        # so each lambda's optimum is unchanged) so that high-lambda episodes do not drown the rest
        scale = 1.0 + lam / c.reward_scale_lambda if c.reward_scale_lambda > 0 else np.ones(b)
        f_ret = torch.as_tensor(clip_r / scale, dtype=torch.float32)
        f_logp = f_logp_all.gather(1, f_act[:, None]).squeeze(1)
        f_ent = _masked_entropy(f_logits, f_logp_all).mean()
        k = min(c.ctu_grad_samples, len(c_act))
        sel = torch.randperm(len(c_act), generator=self.torch_gen)[:k]
        lc, vc = self.agents.ctu(planes[sel], context[sel], amask[sel])
        lp_all = torch.log_softmax(lc, -1)
        c_logp = lp_all.gather(1, c_act[sel][:, None]).squeeze(1)
        c_ret = torch.as_tensor(ctu_r / ctu_scale, dtype=torch.float32)[sel]
        c_ent = _masked_entropy(lc, lp_all).mean()
        if c.advantage in ("all_actions", "greedy"):
            f_q = torch.as_tensor(np.stack([cl.cache.frame_action_values(self.space.qp_i, off_j, float(l))
                                            for cl, off_j, l in zip(clips, per_clip_offsets, lam)]),
                                  dtype=torch.float32)
            c_q = torch.as_tensor(np.concatenate([
                cl.cache.ctu_action_values(int(q), off_j, float(l), self.space.offsets).reshape(-1, len(self.space.offsets))
                for cl, q, off_j, l in zip(clips, qp_is, per_clip_offsets, lam)]), dtype=torch.float32)[sel]
        if c.advantage == "greedy":
            pg_f = best_response_loss(f_logp_all, f_q, c.greedy_smoothing).mean()
            pg_c = best_response_loss(lp_all, c_q, c.greedy_smoothing).mean()
        elif c.advantage == "all_actions":
            pg_f = -_expected_advantage(f_logp_all, f_q).mean()
            ep = torch.as_tensor(np.repeat(np.arange(b), [o.size for o in per_clip_offsets]))[sel]
            pg_c = -_expected_advantage(lp_all, c_q, ep).mean()
        else:
            pg_f = -((f_ret - f_value).detach() * f_logp).mean()
            pg_c = -((c_ret - vc).detach() * c_logp).mean()
        loss_f = pg_f + c.value_coef * (f_value - f_ret).square().mean() - c.entropy_coef_frame * f_ent
        loss_c = pg_c + c.value_coef * (vc - c_ret).square().mean() - c.entropy_coef_ctu * c_ent
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
            (loss_f + loss_c).backward()
            for agent in (self.agents.frame, self.agents.ctu):
                params = [p for p in agent.parameters() if p.requires_grad]
                if params:
                    torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
            self.optimizer.step()
        self.iteration += 1
        return StepStats(float(clip_r.mean()), float(rates.mean()), float(drops.mean()), float(qp_is.mean()),
                         float(offsets.mean()), float(loss_f.detach()), float(loss_c.detach()),
                         float(f_ent.detach()),
                         float(c_ent.detach()), float((f_value - f_ret).abs().mean().detach()),
                         float(gains.mean()))

    def baseline_reward(self, clip: TrainClip, lam: float) -> float:
        """Reward of the best *two-level* decision for this clip and lambda: the best QP_I with the
        smallest background offset and offset 0 on foreground (a hand-crafted reference; the
        ``gain`` statistic is the agents' reward minus this, > 0 when they beat it)."""
        key = (id(clip), round(lam, 6))
        cache = self._baseline_cache
        if key not in cache:
            off = np.where(clip.foreground, 0 if 0 in self.space.fg_offsets else min(self.space.fg_offsets),
                           min(self.space.bg_offsets)).astype(np.int32)
            cache[key] = max(clip.cache.evaluate(int(q), off, lam).reward for q in self.space.qp_i)
        return cache[key]

    @torch.no_grad()
    def evaluate_greedy(self, lambdas: Sequence[float] = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0),
                        clips: Sequence[TrainClip] | None = None) -> dict[str, float]:
        """Deterministic (argmax) decisions on every training clip (or ``clips``) at fixed lambdas,
        scored on the surrogate: mean reward, and mean gain over the best two-level map (oracle QP_I).

        ``greedy_behaves`` is 1 when on every clip the decisions behave as the reward says: the
        coarsest QP_I at lambda = 0 (if evaluated) and a mean QP that never rises with lambda."""
        self.agents.eval()
        rewards, gains, qps = [], [], []
        behaves = True
        valid = self._valid
        for cl in (self.clips if clips is None else clips):
            mean_qp = []
            for lam in sorted(lambdas):
                logits, _ = self.agents.frame(cl.frame_planes[None], lambda_context([lam]))
                qp_i = int(self.space.qp_i_of(int(logits.argmax(-1)[0])))
                obs = ctu_observation(cl.ctu_base, self.space.frame_qps(qp_i, cl.ctu_base.shape[0]), lam)
                lc, _ = self.agents.ctu(obs.planes, obs.context, valid[obs.foreground.long()])
                off = self.space.offset_of(lc.argmax(-1).numpy()).reshape(cl.foreground.shape)
                r = cl.cache.evaluate(qp_i, off, lam).reward
                rewards.append(r)
                gains.append(r - self.baseline_reward(cl, float(lam)))
                qps.append(qp_i)
                mean_qp.append(float(self.space.qp_map(qp_i, off).mean()))
                if lam == 0 and not lambda0_is_coarsest(qp_i, self.space.qp_i):
                    behaves = False
            if mean_qp_rises(sorted(lambdas), mean_qp):
                behaves = False
        self.agents.train()
        return {"greedy_reward": float(np.mean(rewards)), "greedy_gain": float(np.mean(gains)),
                "greedy_qp_i": float(np.mean(qps)), "greedy_behaves": float(behaves)}

    def best_path(self) -> Path | None:
        return None if self.out is None else self.out.with_suffix(".best.pt")

    @property
    def best_score(self) -> tuple[int, float] | None:
        """(iteration, validation reward) of the best validation score so far (the first of equals),
        among the iterations whose decisions behave on the validation clips
        (:meth:`evaluate_greedy`'s ``greedy_behaves``) when there is any: a checkpoint that does not
        take the coarsest QP_I at lambda = 0, or lowers quality as lambda grows, is not chosen for a
        slightly higher surrogate reward (at high lambda that reward is mostly the segmenter's
        noise)."""
        if not self.val_scores:
            return None
        eligible = [s for s in self.val_scores if len(s) > 2 and s[2]] or list(self.val_scores)
        best = max(eligible, key=lambda s: s[1])
        return int(best[0]), float(best[1])

    def _evaluate(self) -> dict[str, float]:
        """Greedy numbers on the training clips, plus ``val_*`` on the validation clips; keeps the
        best validation iteration's agents in :meth:`best_path`."""
        stats = self.evaluate_greedy()
        if self.val_clips:
            val = self.evaluate_greedy(clips=self.val_clips)
            stats.update({f"val_{k[len('greedy_'):]}": v for k, v in val.items()})
            self.val_scores.append((self.iteration, val["greedy_reward"], bool(val["greedy_behaves"])))
            if self.best_score[0] == self.iteration and self.out is not None:
                self.agents.save(self.best_path(), meta={
                    "strategy": self.config.strategy, "iteration": self.iteration,
                    "selected_on": "validation greedy reward (surrogate) among behaving iterations",
                    "val_reward": val["greedy_reward"], "val_behaves": bool(val["greedy_behaves"]),
                    "val_clips": [c.name for c in self.val_clips]})
        return stats

    # -------------------------------------------------------------------------------- running
    def train(self, progress: Callable[[int, int, dict[str, float]], None] | None = None,
              should_stop: Callable[[], bool] | None = None, log_every: int = 10,
              eval_every: int | None = None) -> list[dict[str, float]]:
        """Run until ``config.iterations`` (resuming from :attr:`iteration`) or ``should_stop()``.

        ``progress(done, total, stats)`` is called every ``log_every`` iterations with running
        means and ``eta_s``; every ``eval_every`` iterations (and at 0) the stats also carry
        :meth:`evaluate_greedy`'s numbers. A checkpoint is written every ``checkpoint_every`` iterations, on
        cancel (``should_stop`` or KeyboardInterrupt, which is re-raised) and at the end.
        """
        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        acc: list[StepStats] = []
        greedy: dict[str, float] = {}
        if eval_every and self.iteration == 0:
            greedy = self._evaluate()
            self._log({"iteration": 0, **greedy})
        t_start = time.perf_counter()
        it_start = self.iteration
        try:
            while self.iteration < c.iterations:
                if should_stop is not None and should_stop():
                    break
                acc.append(self.step())
                if eval_every and (self.iteration % eval_every == 0 or self.iteration == c.iterations):
                    greedy = self._evaluate()
                if self.iteration % log_every == 0 or self.iteration == c.iterations:
                    mean = {k: float(np.mean([getattr(s, k) for s in acc])) for k in StepStats._fields}
                    mean.update(greedy)
                    greedy = {}
                    elapsed = time.perf_counter() - t_start
                    per_it = elapsed / max(self.iteration - it_start, 1)
                    mean.update(iteration=self.iteration, seconds_per_iteration=per_it,
                                eta_s=per_it * (c.iterations - self.iteration))
                    self.history.append(mean)
                    self._log(mean)
                    acc = []
                    if progress is not None:
                        progress(self.iteration, c.iterations, mean)
                if self.out is not None and self.iteration % c.checkpoint_every == 0:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            if self.out is not None:
                self.save_checkpoint()
            raise
        if self.out is not None:
            self.save_checkpoint()
        return self.history

    def _log(self, row: dict[str, float]) -> None:
        if self.out is None:
            return
        with open(self.out.with_suffix(".log.jsonl"), "a") as fh:
            fh.write(json.dumps({k: round(v, 6) for k, v in row.items()}) + "\n")

    # ---------------------------------------------------------------------------- checkpoints
    def trainable_parameters(self) -> int:
        return sum(p.numel() for g in self.groups for p in g["params"])

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Full training state next to the agents' checkpoint: ``<out>.state`` (resumable)."""
        path = Path(path) if path is not None else self.out
        assert path is not None
        meta = {"strategy": self.config.strategy, "iteration": self.iteration, "config": asdict(self.config),
                "trainable_parameters": self.trainable_parameters()}
        self.agents.save(path, meta=meta)
        state = {"iteration": self.iteration, "history": self.history, "config": asdict(self.config),
                 "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                 "agents_full": {k: v.detach().clone() for k, v in self.agents.state_dict().items()},
                 "adapters": {"frame": self.agents.frame.adapter_kinds(),
                              "ctu": self.agents.ctu.adapter_kinds()},
                 "rng": self.rng.bit_generator.state, "torch_gen": self.torch_gen.get_state(),
                 "val_scores": self.val_scores}
        tmp = path.with_suffix(path.suffix + ".state.tmp")
        torch.save(state, tmp)
        tmp.replace(path.with_suffix(path.suffix + ".state"))
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore the training state written by :meth:`save_checkpoint`; False when there is none."""
        path = Path(path) if path is not None else self.out
        if path is None:
            return False
        state_path = path.with_suffix(path.suffix + ".state")
        if not state_path.is_file():
            return False
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        for kind in state["adapters"]["frame"]:
            self.agents.frame.add_adapter(kind)
        for kind in state["adapters"]["ctu"]:
            self.agents.ctu.add_adapter(kind)
        self.agents.load_state_dict(state["agents_full"])
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])
        self.rng.bit_generator.state = state["rng"]
        self.torch_gen.set_state(state["torch_gen"])
        self.val_scores = [tuple(x) for x in state.get("val_scores", [])]
        return True
