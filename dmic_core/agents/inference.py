"""Agents at use time: which checkpoint (a named one, or the shipped default) and loading it once.

The one loader behind sweeps, ``dmic compress``, batches and the app. There is no fallback: when
the default checkpoint (:data:`dmic_core.defaults.DEFAULT_AGENTS`) or a named one is missing,
loading fails with an error that names it, instead of quietly deciding with other agents.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dmic_core.defaults import DEFAULT_AGENTS, PRETRAINED_AGENTS
from dmic_core.errors import DmicInputError


def _shipped(name: str, role: str) -> Path:
    from dmic_core.assets import asset_path

    try:
        return asset_path(name)
    except FileNotFoundError as exc:
        raise DmicInputError(f"{role} missing: {exc}") from None


def default_agents_path() -> Path:
    """The shipped agents DMIC uses when none are named (``assets/agents_dmic.pt``)."""
    return _shipped(DEFAULT_AGENTS, "default DMIC agents")


def pretrained_agents_path() -> Path:
    """The shipped source-domain agents that few-shot tuning starts from (``assets/agents_pretrained.pt``)."""
    return _shipped(PRETRAINED_AGENTS, "pretrained agents")


@lru_cache(maxsize=4)
def _load(path: str, mtime: float):
    from dmic_core.agents.dmic import DMICAgents

    return DMICAgents.load(path).eval()


def load_agents(checkpoint: str | Path | None = None):
    """:class:`~dmic_core.agents.dmic.DMICAgents` of ``checkpoint`` (default: :func:`default_agents_path`),
    cached per process and file version.

    Raises:
        DmicInputError: the checkpoint (named or default) does not exist.
    """
    path = Path(checkpoint) if checkpoint is not None else default_agents_path()
    if not path.is_file():
        raise DmicInputError(f"agent checkpoint not found: {path}")
    return _load(str(path.resolve()), path.stat().st_mtime)


__all__ = ["default_agents_path", "load_agents", "pretrained_agents_path"]
