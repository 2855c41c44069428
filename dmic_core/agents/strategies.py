"""The paper's eight tuning strategies (Fig. 1 a-h): what each one trains, and nothing else.

=================  ==========================================================================
``pretrained``     nothing (the pretrained agents as they are)
``a2c``            ``a2c`` (actor and critic heads) -- the paper's winner
``a2c_fc``         ``a2c`` + ``fc``
``full``           ``fe`` + ``fc`` + ``a2c``
``adapterv1``      a new AdapterV1 on FC (``adapters.fc``)
``adapterv1_a2c``  ``adapters.fc`` + ``a2c``
``adapter``        new adapters after the actor and the critic (``adapters.actor/critic``)
``adapter_critic`` ``adapters.actor`` + ``a2c.critic``
=================  ==========================================================================

:func:`apply_strategy` inserts the adapters a strategy needs (identity at insertion), sets
``requires_grad`` on every parameter, and returns the trainable ones. :func:`param_groups`
does it for both agents and gives each agent its own learning rate (paper: 1e-3 frame,
1e-4 CTU); build the optimiser on those groups and never reset every group's rate at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where parameters are touched: the registry is read by argparse and the app
    from torch import nn
    from dmic_core.agents.policies import PolicyAgent


#: How the policy gradient weighs actions. ``sampled``: the classic A2C estimate, ``A = r - V(s)``
#: for the one sampled action. ``all_actions``: the surrogate gives the reward of *every* action
#: of an episode (each QP_I with the episode's CTU offsets; each CTU's every offset with the
#: others kept), so the gradient is the exact expectation ``sum_a grad pi(a|s) A(a)`` with
#: ``A(a) = Q(a) - sum_a' pi(a') Q(a')`` (Mean Actor-Critic, Allen et al. 2017), each
#: episode's advantages divided by their spread. No sampling noise, and every lambda weighs the
#: same; the sampled estimate left the frame agent on QP_I 28-31 even at lambda = 0.
#: ``greedy``: the same exact action values, but the actor is moved towards the best action of
#: each state (cross-entropy to ``argmax_a Q(a)``, smoothed by ``greedy_smoothing``): policy
#: improvement with the surrogate as the model. Unlike the two gradients above it does not
#: vanish once the policy has settled next to the optimum (QP_I 36 with probability 0.999 when
#: 37 is better at lambda = 0: the expected gradient towards 37 is proportional to pi(37)).
ADVANTAGES = ("sampled", "all_actions", "greedy")


@dataclass(frozen=True)
class Strategy:
    """What a tuning strategy inserts and trains, and how the CLI, the app and the tables name it.

    Attributes:
        adapters: adapters to insert (identity at insertion).
        trained: dotted submodules to train; everything else is frozen.
        paper_label: the paper's name (Fig. 1 a-h), used by the tables and figures.
        summary: one line for people choosing a strategy (the Fine-tune page).
    """

    adapters: tuple[str, ...]
    trained: tuple[str, ...]
    paper_label: str
    summary: str


#: The registry: every strategy name anywhere (``dmic finetune --strategy``, the Fine-tune page,
#: the experiments' variants) is a key of this dict, in the paper's order.
STRATEGIES: dict[str, Strategy] = {
    "pretrained": Strategy((), (), "(a) Pretrained", "no tuning (copies the pretrained agents; a baseline)"),
    "a2c": Strategy((), ("a2c",), "(b) Tune A2C",
                    "tune only the actor-critic heads (the paper's winner, ~2.8% of the parameters)"),
    "a2c_fc": Strategy((), ("a2c", "fc"), "(c) Tune A2C & FC", "A2C heads + the fully connected layer"),
    "full": Strategy((), ("fe", "fc", "a2c"), "(d) Tune Full Model", "everything"),
    "adapterv1": Strategy(("fc",), ("adapters.fc",), "(e) Tune AdapterV1", "a new adapter on the FC layer only"),
    "adapterv1_a2c": Strategy(("fc",), ("adapters.fc", "a2c"), "(f) Tune AdapterV1 & A2C", "FC adapter + A2C heads"),
    "adapter": Strategy(("actor", "critic"), ("adapters.actor", "adapters.critic"), "(g) Tune Adapter",
                        "new adapters after actor and critic"),
    "adapter_critic": Strategy(("actor",), ("adapters.actor", "a2c.critic"), "(h) Tune Adapter & Critic",
                               "actor adapter + critic"),
}
#: Strategy names in the paper's order: ``tuple(STRATEGIES)``.
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)
#: What few-shot tuning tunes unless told otherwise: the paper's winner.
DEFAULT_STRATEGY = "a2c"


def _submodule(agent: nn.Module, dotted: str) -> nn.Module:
    from torch import nn

    mod: nn.Module = agent
    for part in dotted.split("."):
        mod = mod[part] if isinstance(mod, nn.ModuleDict) else getattr(mod, part)
    return mod


def apply_strategy(agent: PolicyAgent, name: str) -> list[nn.Parameter]:
    """Freeze ``agent`` except what strategy ``name`` trains; return the trainable parameters."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown tuning strategy {name!r}; known: {list(STRATEGIES)}")
    strategy = STRATEGIES[name]
    for kind in strategy.adapters:
        agent.add_adapter(kind)
    agent.requires_grad_(False)
    params: list[nn.Parameter] = []
    for dotted in strategy.trained:
        mod = _submodule(agent, dotted)
        mod.requires_grad_(True)
        params.extend(mod.parameters())
    return params


def param_groups(frame: PolicyAgent, ctu: PolicyAgent, name: str, lr_frame: float = 1e-3,
                 lr_ctu: float = 1e-4) -> list[dict]:
    """Optimiser parameter groups for both agents under strategy ``name`` (empty groups dropped)."""
    groups = []
    for agent, lr, tag in ((frame, lr_frame, "frame"), (ctu, lr_ctu, "ctu")):
        params = apply_strategy(agent, name)
        if params:
            groups.append({"params": params, "lr": lr, "name": tag})
    return groups
