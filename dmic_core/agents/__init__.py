"""DMIC's hierarchical RL agents: action spaces, policies, tuning strategies, environment, training.

* :mod:`~dmic_core.agents.spaces` -- the frame (QP_I) and CTU (QP offset) action spaces;
* :mod:`~dmic_core.agents.features` -- the agents' states from slices and masks;
* :mod:`~dmic_core.agents.policies` -- FE / FC / A2C networks and adapters;
* :mod:`~dmic_core.agents.strategies` -- the paper's eight tuning strategies;
* :mod:`~dmic_core.agents.dmic` -- :class:`DMICAgents` (decide, save, load);
* :mod:`~dmic_core.agents.handcrafted` -- mask-ratio QP maps (paper Fig. 2a);
* :mod:`~dmic_core.agents.env` -- real and surrogate coding environments, reward;
* :mod:`~dmic_core.agents.a2c` / :mod:`~dmic_core.agents.train` -- A2C training, pretraining.

See ``docs/agents.md``.
"""
