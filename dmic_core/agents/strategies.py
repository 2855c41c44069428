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

from torch import nn

from dmic_core.agents.policies import PolicyAgent

#: strategy -> (adapters to insert, dotted submodules to train)
STRATEGIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pretrained": ((), ()),
    "a2c": ((), ("a2c",)),
    "a2c_fc": ((), ("a2c", "fc")),
    "full": ((), ("fe", "fc", "a2c")),
    "adapterv1": (("fc",), ("adapters.fc",)),
    "adapterv1_a2c": (("fc",), ("adapters.fc", "a2c")),
    "adapter": (("actor", "critic"), ("adapters.actor", "adapters.critic")),
    "adapter_critic": (("actor",), ("adapters.actor", "a2c.critic")),
}


def _submodule(agent: nn.Module, dotted: str) -> nn.Module:
    mod: nn.Module = agent
    for part in dotted.split("."):
        mod = mod[part] if isinstance(mod, nn.ModuleDict) else getattr(mod, part)
    return mod


def apply_strategy(agent: PolicyAgent, name: str) -> list[nn.Parameter]:
    """Freeze ``agent`` except what strategy ``name`` trains; return the trainable parameters."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown tuning strategy {name!r}; known: {list(STRATEGIES)}")
    adapters, trained = STRATEGIES[name]
    for kind in adapters:
        agent.add_adapter(kind)
    agent.requires_grad_(False)
    params: list[nn.Parameter] = []
    for dotted in trained:
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
