"""The hierarchical agent pair: frame agent (QP_I) then CTU agent (per-CTU QP offsets).

:class:`DMICAgents` holds both agents and their action space, turns a clip and its task mask
into a QP decision (:meth:`DMICAgents.decide`), and saves/loads checkpoints (float16 storage
by default: ~4 MB for both agents).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmic_core.agents.features import clip_state, ctu_observation, lambda_context
from dmic_core.agents.policies import CTUAgent, FrameAgent
from dmic_core.agents.spaces import PAPER, ActionSpace, get_space
from dmic_core.codecs.qp import ctu_grid_shape
from dmic_core.errors import DmicInputError

CHECKPOINT_FORMAT = "dmic-agents/1"
#: CTUs per forward pass of the CTU agent in :meth:`DMICAgents.decide` (64 frames of 512 x 512).
CTU_BATCH = 4096


@dataclass
class Decision:
    """What the agents chose for one clip.

    Attributes:
        qp_i: the I-frame paper QP.
        frame_qps: paper QP of every frame (GOP-8 rule).
        offsets: CTU QP offsets ``(F, rows, cols)`` as chosen (always valid for the CTU's class).
        foreground: ``(F, rows, cols)`` CTUs that hold mask.
        qp_map: absolute paper QP per CTU (the codec clips coded QPs to 0..51).
        seconds: wall time of ``features``, ``frame_agent``, ``ctu_agent`` and ``total``.
    """

    qp_i: int
    frame_qps: np.ndarray
    offsets: np.ndarray
    foreground: np.ndarray
    qp_map: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


class DMICAgents(nn.Module):
    """Frame-level and CTU-level agents over one action space."""

    def __init__(self, space: ActionSpace | str = PAPER):
        super().__init__()
        self.space = get_space(space)
        self.frame = FrameAgent(self.space.n_frame_actions)
        self.ctu = CTUAgent(self.space.n_ctu_actions)
        self.meta: dict[str, Any] = {}
        #: 3-D connected components of the task mask smaller than this (voxels) are dropped before
        #: deciding (0: the mask as given); see :meth:`drop_small_regions`
        self.min_component_voxels = 0

    def restrict_foreground(self, fg_offsets: tuple[int, ...]) -> "DMICAgents":
        """The same networks deciding in :meth:`ActionSpace.restricted`: foreground CTUs choose
        only among ``fg_offsets`` (their preferred allowed offset, the others masked out)."""
        self.space = self.space.restricted(fg_offsets)
        return self

    def drop_small_regions(self, min_voxels: int) -> "DMICAgents":
        """The same networks protecting only the mask's 3-D connected components of at least
        ``min_voxels`` voxels: the segmenter's false positives are mostly small isolated blobs,
        and with vessel CTUs kept at offset 0 each of their CTUs costs vessel quality for nothing.
        Components that touch the clip's first or last frame are kept: they may go on beyond it,
        so a 33-frame slab is judged as the whole volume would be."""
        if min_voxels < 0:
            raise ValueError(f"min_voxels must be >= 0, got {min_voxels}")
        self.min_component_voxels = int(min_voxels)
        return self

    def region(self, mask: np.ndarray) -> np.ndarray:
        """The part of ``mask`` these agents protect (:meth:`drop_small_regions`)."""
        if self.min_component_voxels <= 0:
            return mask
        from dmic_core.maps import drop_small_components

        return drop_small_components(mask, self.min_component_voxels, keep_ends=True)

    # ------------------------------------------------------------------------------ decisions
    def ctu_action_mask(self, foreground: torch.Tensor) -> torch.Tensor:
        table = torch.as_tensor(self.space.valid_offset_table())
        return table[foreground.long()]

    @torch.inference_mode()
    def decide(self, hu: np.ndarray, mask: np.ndarray, lam: float, *, deterministic: bool = True,
               qp_i: int | None = None, generator: torch.Generator | None = None) -> Decision:
        """QP decision for a clip ``hu`` ``(F, H, W)`` with task mask ``mask`` at trade-off ``lam``.

        Args:
            mask: the segmenter's mask of the clip; the agents protect :meth:`region` of it.
            deterministic: argmax actions (else sampled with ``generator``).
            qp_i: force the I-frame QP (the CTU agent still decides the offsets).
        """
        t0 = time.perf_counter()
        n, h, w = hu.shape
        rows, cols = ctu_grid_shape(h, w)
        fplanes, base = clip_state(hu, self.region(mask))
        fplanes = fplanes[None]
        ctx = lambda_context([lam])
        t1 = time.perf_counter()
        if qp_i is None:
            logits, _ = self.frame(fplanes, ctx)
            a = _pick(logits, deterministic, generator)
            qp_i = int(self.space.qp_i_of(int(a[0])))
        frame_qps = self.space.frame_qps(qp_i, n)
        t2 = time.perf_counter()
        obs = ctu_observation(base, frame_qps, lam)
        action_mask = self.ctu_action_mask(obs.foreground)
        # CTUs in batches: the network's activations stay ~0.1 GB for a whole 275-frame volume
        # (one pass over its 17,600 CTUs took ~1 GB); the logits are the same, batch by batch
        logits = torch.cat([self.ctu(obs.planes[i:i + CTU_BATCH], obs.context[i:i + CTU_BATCH],
                                     action_mask[i:i + CTU_BATCH])[0]
                            for i in range(0, len(obs.planes), CTU_BATCH)])
        actions = _pick(logits, deterministic, generator).numpy().reshape(n, rows, cols)
        offsets = self.space.offset_of(actions)
        t3 = time.perf_counter()
        fg = obs.foreground.numpy().reshape(n, rows, cols)
        return Decision(qp_i, frame_qps, offsets, fg, self.space.qp_map(qp_i, offsets),
                        {"features": t1 - t0, "frame_agent": t2 - t1, "ctu_agent": t3 - t2,
                         "total": t3 - t0})

    # ---------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, *, half: bool = True, meta: dict[str, Any] | None = None) -> None:
        """Write a checkpoint (float16 weights unless ``half=False``) with space, adapters and meta."""
        state = {k: (v.detach().to(torch.float16) if half and v.is_floating_point() else v.detach()).cpu()
                 for k, v in self.state_dict().items()}
        payload = {
            "format": CHECKPOINT_FORMAT,
            "space": self.space.to_dict(),
            "adapters": {"frame": self.frame.adapter_kinds(), "ctu": self.ctu.adapter_kinds()},
            "state": state,
            "meta": {**self.meta, **(meta or {})},
        }
        if self.min_component_voxels:  # absent otherwise: a checkpoint without a rule reads as before
            payload["region"] = {"min_component_voxels": self.min_component_voxels}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "DMICAgents":
        """Agents from a checkpoint written by :meth:`save` (weights back in float32).

        Raises:
            DmicInputError: the file is missing, truncated, corrupt, or not a DMIC agents checkpoint
                (one line naming the file; a job does not retry it).
        """
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise DmicInputError("agent checkpoint not found", path) from None
        except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...
            raise DmicInputError(f"not a readable agents checkpoint, truncated or corrupt ({_one_line(exc)})",
                                 path) from exc
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise DmicInputError(f"not a DMIC agents checkpoint (format {found!r})", path)
        try:
            agents = cls(ActionSpace.from_dict(payload["space"]))
            for kind in payload["adapters"]["frame"]:
                agents.frame.add_adapter(kind)
            for kind in payload["adapters"]["ctu"]:
                agents.ctu.add_adapter(kind)
            agents.load_state_dict({k: v.float() if v.is_floating_point() else v
                                    for k, v in payload["state"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DmicInputError(f"agents checkpoint does not fit the agents ({_one_line(exc)})",
                                 path) from exc
        agents.meta = dict(payload.get("meta", {}))
        agents.min_component_voxels = int(payload.get("region", {}).get("min_component_voxels", 0))
        return agents


def _pick(logits: torch.Tensor, deterministic: bool, generator: torch.Generator | None) -> torch.Tensor:
    if deterministic:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _one_line(exc: BaseException) -> str:
    """An exception's type and first sentence (torch's messages run to paragraphs of advice)."""
    text = " ".join(str(exc).split()).split(". ")[0].rstrip(".")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
