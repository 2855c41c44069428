"""The frame agent tuned on real encodes: each clip's real reward of every QP_I (issue 13).

Why: the surrogate that trained the agents prices a mixed map as a mosaic of uniform encodes, and on
the coronary task it over-estimates the accuracy of coarse QP_I (a coarse background degrades the
U-Net's view of the vessels across CTU borders, which the mosaic cannot see). Its agents stop at
QP_I 26 from lambda 20 up, at any lambda, while real encodes of validation phantoms give their
best reward at QP_I 23 for lambda 50 and 100 (``bench/frame_qp_ceiling.py``). The frame agent
makes one decision per clip among 24 QP_I values, so its whole real table (every QP_I, with the
CTU agent's own offsets for it) costs 24 encodes of a clip: it can learn from the evaluation
encoder itself instead of the surrogate. The CTU agent is left as it is.

:func:`real_frame_table` codes the table; :func:`tune_frame_agent` moves the frame agent towards
each table's best QP_I (the ``greedy`` update of :mod:`dmic_core.agents.a2c`,
:func:`~dmic_core.agents.a2c.best_response_loss`, with the real table as the action values) and
keeps the iteration with the best real reward on validation tables among those that behave
(:mod:`dmic_core.agents.behaviour`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dmic_core.agents.a2c import best_response_loss
from dmic_core.agents.behaviour import lambda0_is_coarsest, mean_qp_rises
from dmic_core.agents.dmic import DMICAgents
from dmic_core.agents.env import RealEnv
from dmic_core.agents.features import clip_state, lambda_context
from dmic_core.agents.strategies import apply_strategy

#: lambdas at which validation tables score a frame agent (the A2C trainer's, plus 50)
EVAL_LAMBDAS = (0.0, 1.0, 3.0, 10.0, 30.0, 50.0, 100.0)


@dataclass
class FrameTable:
    """Real rate and accuracy drop of one clip at every QP_I of a space.

    Attributes:
        qp_i: the space's QP_I values, in its action order.
        rate: bits / bits of the reference decision (QP_I 22, no offsets), per QP_I.
        drop: task accuracy lost against the original's (``ceiling - mIoU``), per QP_I.
    """

    name: str
    qp_i: tuple[int, ...]
    rate: np.ndarray
    drop: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def monotone_drop(self) -> np.ndarray:
        """The drop made non-decreasing in QP_I (isotonic least squares, ``scipy``): coarser coding
        does not gain accuracy on average, and a table's single encodes differ by about 0.003 mIoU
        from noise alone, which would otherwise choose the target QP_I at high lambda."""
        from scipy.optimize import isotonic_regression

        order = np.argsort(self.qp_i)
        fitted = np.empty_like(self.drop, dtype=np.float64)
        fitted[order] = isotonic_regression(np.asarray(self.drop, dtype=np.float64)[order], increasing=True).x
        return fitted

    def rewards(self, lam: float, monotone: bool = True) -> np.ndarray:
        """``-(R + lambda D)`` of every QP_I."""
        drop = self.monotone_drop() if monotone else np.asarray(self.drop, dtype=np.float64)
        return -(np.asarray(self.rate, dtype=np.float64) + float(lam) * drop)

    def best_action(self, lam: float, monotone: bool = True) -> int:
        """Index of the best QP_I at ``lam`` (ties: the coarser one)."""
        r = self.rewards(lam, monotone)
        best = np.flatnonzero(r >= r.max() - 1e-12)
        return int(max(best, key=lambda i: self.qp_i[i]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "qp_i": list(self.qp_i), "rate": [float(v) for v in self.rate],
                "drop": [float(v) for v in self.drop], "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrameTable":
        return cls(d["name"], tuple(int(q) for q in d["qp_i"]), np.asarray(d["rate"], dtype=np.float64),
                   np.asarray(d["drop"], dtype=np.float64), dict(d.get("meta", {})))


def real_frame_table(env: RealEnv, agents: DMICAgents, *, name: str, decide_lambda: float = 10.0,
                     progress: Callable[[int, int], None] | None = None) -> FrameTable:
    """Really code ``env``'s clip at every QP_I of ``agents.space``, each with the CTU agent's offsets
    for that QP_I at ``decide_lambda`` (from lambda 2 up they barely change: background +8,
    foreground 0), and record rate and drop."""
    qp_is = tuple(int(q) for q in agents.space.qp_i)
    hu, mask = env.volume.hu, env.mask
    rates, drops = [], []
    for k, qp_i in enumerate(qp_is):
        decision = agents.decide(hu, mask, decide_lambda, qp_i=qp_i)
        outcome = env.step(qp_i, decision.offsets, decide_lambda)
        rates.append(outcome.rate)
        drops.append(outcome.drop)
        if progress is not None:
            progress(k + 1, len(qp_is))
    return FrameTable(name, qp_is, np.asarray(rates), np.asarray(drops),
                      {"decide_lambda": decide_lambda, "reference": env.reference.kind,
                       "frames": int(env.volume.n_frames), "bits_ref": env.bits_ref})


@dataclass
class FrameTuneConfig:
    """Settings of :func:`tune_frame_agent` (lambdas drawn as the A2C trainer draws them)."""

    iterations: int = 300
    lr: float = 1e-3
    strategy: str = "a2c"           # what of the frame agent is trained (dmic_core.agents.strategies)
    smoothing: float = 0.05         # of the cross-entropy target, as the greedy A2C update
    lambdas_per_clip: int = 4
    lambda_min: float = 0.3
    lambda_max: float = 100.0
    zero_fraction: float = 0.1      # share of lambda = 0 draws
    monotone: bool = True           # targets from FrameTable.monotone_drop
    eval_every: int = 20
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FrameClip:
    """A clip's frame-agent planes and its real table."""

    planes: torch.Tensor
    table: FrameTable

    @classmethod
    def from_volume(cls, hu: np.ndarray, region: np.ndarray, table: FrameTable) -> "FrameClip":
        planes, _ = clip_state(hu, region)
        return cls(planes, table)


def _draw_lambdas(rng: np.random.Generator, n: int, cfg: FrameTuneConfig) -> np.ndarray:
    lam = np.exp(rng.uniform(np.log(cfg.lambda_min), np.log(cfg.lambda_max), n))
    lam[rng.random(n) < cfg.zero_fraction] = 0.0
    return lam


@torch.no_grad()
def greedy_frame_score(agents: DMICAgents, clips: Sequence[FrameClip], lambdas: Sequence[float] = EVAL_LAMBDAS,
                       monotone: bool = True) -> dict[str, Any]:
    """The frame agent's argmax QP_I on each clip at ``lambdas``, scored on the real tables: mean
    reward, the QP_I chosen, and whether it behaves (coarsest at lambda 0, QP_I never rising)."""
    agents.eval()
    rewards, chosen, behaves = [], {}, True
    lambdas = sorted(float(v) for v in lambdas)
    for clip in clips:
        logits, _ = agents.frame(clip.planes[None].expand(len(lambdas), *clip.planes.shape), lambda_context(lambdas))
        actions = logits.argmax(-1).tolist()
        qps = [clip.table.qp_i[a] for a in actions]
        chosen[clip.table.name] = qps
        rewards += [clip.table.rewards(lam, monotone)[a] for lam, a in zip(lambdas, actions)]
        if (lambdas[0] == 0 and not lambda0_is_coarsest(qps[0], clip.table.qp_i)) or mean_qp_rises(lambdas, qps):
            behaves = False
    return {"reward": float(np.mean(rewards)), "qp_i": chosen, "behaves": behaves}


def tune_frame_agent(agents: DMICAgents, train: Sequence[FrameClip], val: Sequence[FrameClip],
                     cfg: FrameTuneConfig = FrameTuneConfig(),
                     progress: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``agents.frame`` (strategy ``cfg.strategy``; the CTU agent frozen) towards the best real
    QP_I of each training table, and leave it at the best validation iteration among those that
    behave (iteration 0, the agents as given, competes too). Returns the history."""
    space_qp = tuple(int(q) for q in agents.space.qp_i)
    for clip in (*train, *val):
        if clip.table.qp_i != space_qp:
            raise ValueError(f"table {clip.table.name} has QP_I {clip.table.qp_i}, the agents' space {space_qp}")
    if not train or not val:
        raise ValueError("frame tuning needs training and validation tables")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    for p in agents.ctu.parameters():
        p.requires_grad_(False)
    params = apply_strategy(agents.frame, cfg.strategy)
    opt = torch.optim.Adam(params, lr=cfg.lr)

    def evaluate(it: int, loss: float | None) -> dict[str, Any]:
        score = greedy_frame_score(agents, val, monotone=cfg.monotone)
        row = {"iteration": it, "loss": loss, "val_reward": score["reward"], "val_behaves": score["behaves"],
               "val_qp_i": score["qp_i"], "train_reward": greedy_frame_score(agents, train, monotone=cfg.monotone)["reward"]}
        if progress is not None:
            progress(it, row)
        return row

    history = [evaluate(0, None)]
    best = (history[0]["val_behaves"], history[0]["val_reward"], 0, copy.deepcopy(agents.frame.state_dict()))
    for it in range(1, cfg.iterations + 1):
        agents.frame.train()
        lam = _draw_lambdas(rng, len(train) * cfg.lambdas_per_clip, cfg).reshape(len(train), -1)
        planes = torch.cat([c.planes[None].expand(cfg.lambdas_per_clip, *c.planes.shape) for c in train])
        q = torch.as_tensor(np.stack([c.table.rewards(v, cfg.monotone) for c, row in zip(train, lam) for v in row]),
                            dtype=torch.float32)
        logits, _ = agents.frame(planes, lambda_context(lam.reshape(-1)))
        loss = best_response_loss(torch.log_softmax(logits, -1), q, cfg.smoothing).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % cfg.eval_every == 0 or it == cfg.iterations:
            row = evaluate(it, float(loss.detach()))
            history.append(row)
            # behaving iterations first, then the best validation reward (the first of equals)
            if (row["val_behaves"], row["val_reward"]) > best[:2]:
                best = (row["val_behaves"], row["val_reward"], it, copy.deepcopy(agents.frame.state_dict()))
    agents.frame.load_state_dict(best[3])
    agents.eval()
    history.append({"chosen_iteration": best[2], "val_reward": best[1], "val_behaves": best[0]})
    return history


__all__ = ["EVAL_LAMBDAS", "FrameClip", "FrameTable", "FrameTuneConfig", "greedy_frame_score",
           "real_frame_table", "tune_frame_agent"]
