"""Policy networks of the frame-level and CTU-level agents: ``S = FC(FE(S, M(S)))``, ``M = A2C(S)``.

Structure (Stable-Baselines3's ``ActorCriticPolicy`` split, paper Eq. 1), with named submodules
so that tuning strategies can freeze exactly one part:

* ``fe`` -- :class:`ConvFeatureExtractor`: a small CNN over image + mask (+ constant context
  planes, among them the normalised lambda, so that every feature can depend on the trade-off)
  ending in ``224 x 4 x 4 = 3584`` features (``features_dim``);
* ``fc`` -- ``Linear(features_dim + 1 -> 256)`` + ReLU; the ``+1`` is the scalar context
  (normalised lambda). ``3585 x 256 + 256 = 918,016`` parameters, as the paper's FC;
* ``a2c`` -- the actor-critic heads, ``a2c.actor`` and ``a2c.critic``, each
  ``Linear(256 -> 56)`` + Tanh (``body``) then ``Linear(56 -> n)`` (``out``). The two bodies
  alone are ``2 x (256 x 56 + 56) = 28,784`` parameters, the paper's A2C count; with the output
  layers A2C is ~2.8% of an agent, as in the paper (2.7%);
* ``adapters`` -- empty until a tuning strategy inserts them (issue 5, paper Fig. 1 e-h):
  ``"fc"``: :class:`AdapterV1`, two ``Linear(256, 256)`` as a residual branch on FC's output
  (131,584 parameters, as the paper's); ``"actor"`` / ``"critic"``: :class:`Adapter`, a
  CLIP-Adapter-style residual bottleneck (56 -> 44 -> 56) after the head's body. Every
  adapter's last layer starts at zero, so inserting one does not change the policy.

The frame agent runs ``fe`` on every frame of a clip and averages the features over frames; the
CTU agent runs it on every CTU's thumbnail, all CTUs of a clip in one batch.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from dmic_core.agents.features import CTU_CHANNELS, CTU_THUMB, FRAME_CHANNELS, FRAME_SIZE

LATENT_DIM = 256
HEAD_HIDDEN = 56
ADAPTER_BOTTLENECK = 44


class ConvFeatureExtractor(nn.Module):
    """FE: strided 3x3 convolutions down to a 4 x 4 grid, then a 1x1 convolution to 224 channels.

    Args:
        in_channels: input planes.
        input_size: square input side (a power of two, >= 8).
        widths: channels of the strided convolutions (one per halving down to 4 x 4; the
            remaining ones run at 4 x 4 with stride 1).
        out_channels: channels of the final 1x1 convolution; ``features_dim = out_channels * 16``.
    """

    def __init__(self, in_channels: int, input_size: int, widths: Iterable[int], out_channels: int = 224):
        super().__init__()
        layers: list[nn.Module] = []
        size, ch = input_size, in_channels
        for w in widths:
            stride = 2 if size > 4 else 1
            layers += [nn.Conv2d(ch, w, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            size //= stride
            ch = w
        if size != 4:
            raise ValueError(f"widths {list(widths)} leave a {size}x{size} grid, need 4x4")
        layers += [nn.Conv2d(ch, out_channels, 1), nn.ReLU(inplace=True), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.input_size = input_size
        self._features_dim = out_channels * 16

    @property
    def features_dim(self) -> int:
        return self._features_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Head(nn.Module):
    """One A2C head: ``body`` (Linear 256 -> 56, Tanh) then ``out`` (Linear 56 -> n)."""

    def __init__(self, n_out: int, latent_dim: int = LATENT_DIM, hidden: int = HEAD_HIDDEN):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh())
        self.out = nn.Linear(hidden, n_out)


class A2CHeads(nn.Module):
    """The actor (``action_net``) and critic (``value_net``)."""

    def __init__(self, n_actions: int, latent_dim: int = LATENT_DIM, hidden: int = HEAD_HIDDEN):
        super().__init__()
        self.actor = Head(n_actions, latent_dim, hidden)
        self.critic = Head(1, latent_dim, hidden)


class AdapterV1(nn.Module):
    """Residual adapter on FC's 256-d output: ``z + W2 relu(W1 z)`` (two ``Linear(256, 256)``)."""

    def __init__(self, dim: int = LATENT_DIM):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.fc2(torch.relu(self.fc1(z)))


class Adapter(nn.Module):
    """CLIP-Adapter-style residual bottleneck on a head's hidden features: ``h + up(relu(down(h)))``."""

    def __init__(self, dim: int = HEAD_HIDDEN, bottleneck: int = ADAPTER_BOTTLENECK):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


ADAPTER_KINDS = ("fc", "actor", "critic")


class PolicyAgent(nn.Module):
    """Shared body of both agents: ``fe`` -> ``fc`` (with the scalar context) -> ``a2c``."""

    kind = "base"

    def __init__(self, fe: ConvFeatureExtractor, n_actions: int):
        super().__init__()
        self.fe = fe
        self.fc = nn.Sequential(nn.Linear(fe.features_dim + 1, LATENT_DIM), nn.ReLU(inplace=True))
        self.a2c = A2CHeads(n_actions)
        self.adapters = nn.ModuleDict()
        self.n_actions = n_actions

    # ------------------------------------------------------------------------------- adapters
    def add_adapter(self, kind: str) -> nn.Module:
        """Insert adapter ``kind`` (``"fc"``, ``"actor"`` or ``"critic"``) if absent; identity at start."""
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"unknown adapter {kind!r}; known: {ADAPTER_KINDS}")
        if kind not in self.adapters:
            module = AdapterV1() if kind == "fc" else Adapter()
            ref = next(self.fc.parameters())
            self.adapters[kind] = module.to(device=ref.device, dtype=ref.dtype)
        return self.adapters[kind]

    def adapter_kinds(self) -> list[str]:
        return list(self.adapters.keys())

    # -------------------------------------------------------------------------------- forward
    @staticmethod
    def with_context_plane(planes: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Append the scalar context as a constant plane: ``(N, C, H, W)`` -> ``(N, C + 1, H, W)``."""
        ctx = context.reshape(-1, 1, 1, 1).to(planes.dtype).expand(planes.shape[0], 1, *planes.shape[2:])
        return torch.cat([planes, ctx], dim=1)

    def embed(self, features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """FC (+ AdapterV1) on FE features and the scalar context: the 256-d latent."""
        z = self.fc(torch.cat([features, context.reshape(-1, 1).to(features.dtype)], dim=1))
        if "fc" in self.adapters:
            z = self.adapters["fc"](z)
        return z

    def heads(self, z: torch.Tensor,
              action_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor logits (invalid actions at -inf) and critic values for latents ``z``."""
        h_pi = self.a2c.actor.body(z)
        if "actor" in self.adapters:
            h_pi = self.adapters["actor"](h_pi)
        logits = self.a2c.actor.out(h_pi)
        h_vf = self.a2c.critic.body(z)
        if "critic" in self.adapters:
            h_vf = self.adapters["critic"](h_vf)
        value = self.a2c.critic.out(h_vf).squeeze(-1)
        if action_mask is not None:
            logits = logits.masked_fill(~action_mask, float("-inf"))
        return logits, value


class FrameAgent(PolicyAgent):
    """Frame-level agent: a clip's frames (``(B, F, 5, 64, 64)`` + a lambda plane) + lambda -> QP_I."""

    kind = "frame"

    def __init__(self, n_actions: int):
        super().__init__(ConvFeatureExtractor(FRAME_CHANNELS + 1, FRAME_SIZE, (16, 32, 64, 112)), n_actions)

    def forward(self, planes: torch.Tensor, context: torch.Tensor,
                action_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, f = planes.shape[:2]
        per_frame = context.reshape(b, 1).expand(b, f).reshape(-1)
        x = self.with_context_plane(planes.reshape(b * f, *planes.shape[2:]), per_frame)
        feats = self.fe(x).reshape(b, f, -1).mean(dim=1)
        return self.heads(self.embed(feats, context), action_mask)


class CTUAgent(PolicyAgent):
    """CTU-level agent: every CTU's thumbnail (``(N, 7, 16, 16)`` + a lambda plane) + lambda -> offset."""

    kind = "ctu"

    def __init__(self, n_actions: int):
        super().__init__(ConvFeatureExtractor(CTU_CHANNELS + 1, CTU_THUMB, (16, 64, 128)), n_actions)

    def forward(self, planes: torch.Tensor, context: torch.Tensor,
                action_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.embed(self.fe(self.with_context_plane(planes, context)), context), action_mask)


def count_parameters(agent: PolicyAgent, trainable_only: bool = False) -> dict[str, int]:
    """Parameters per module: ``fe``, ``fc``, ``a2c`` (and ``a2c.actor``/``a2c.critic``), each
    adapter (``adapter.fc`` ...), ``total`` (everything) and ``trainable``."""

    def n(mod: nn.Module) -> int:
        return sum(p.numel() for p in mod.parameters() if p.requires_grad or not trainable_only)

    out = {"fe": n(agent.fe), "fc": n(agent.fc), "a2c": n(agent.a2c),
           "a2c.actor": n(agent.a2c.actor), "a2c.critic": n(agent.a2c.critic)}
    for kind, mod in agent.adapters.items():
        out[f"adapter.{kind}"] = n(mod)
    out["total"] = n(agent)
    out["trainable"] = sum(p.numel() for p in agent.parameters() if p.requires_grad)
    return out
