"""A compact 2.5-D U-Net for coronary-artery (vessel) segmentation of axial CCTA slices.

The network sees ``in_slices`` adjacent axial frames (odd, the centre one is segmented) as input
channels and returns one vessel logit per pixel of the centre frame, at full in-plane resolution.

To run a 512 x 512 frame on a couple of CPU cores it starts with a lossless space-to-depth step
(:class:`torch.nn.PixelUnshuffle`): every ``stem_factor`` x ``stem_factor`` pixel block becomes
channels, the U-Net proper works on the smaller grid, and the head returns
``stem_factor**2`` sub-pixel logits that :class:`torch.nn.PixelShuffle` puts back on the input
grid. No pixel is dropped or interpolated on the way in or out; the full-resolution detail
enters through the stem's channels and leaves through the sub-pixel head (ESPCN-style).

Intensities are normalised by :func:`normalize_hu` with the fixed window :data:`HU_WINDOW`, the
one place that defines how Hounsfield units become network input.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

#: CCTA window (HU) mapped to [0, 1] before the network: from fat/soft tissue (-200 HU) through
#: contrast-filled lumen (~300-550 HU) to calcium and bone (800 HU and above saturate).
HU_WINDOW: tuple[float, float] = (-200.0, 800.0)


def normalize_hu(hu: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Hounsfield units -> float32 tensor clipped to [0, 1] over :data:`HU_WINDOW`."""
    lo, hi = HU_WINDOW
    if isinstance(hu, torch.Tensor):
        t = hu.to(torch.float32)
    else:
        a = np.asarray(hu, dtype=np.float32)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())
    return ((t - lo) / (hi - lo)).clamp(0.0, 1.0)


class ConvBlock(nn.Sequential):
    """Two ``3x3 conv -> BatchNorm -> ReLU`` layers."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class UNet25D(nn.Module):
    """2.5-D U-Net: ``(N, in_slices, H, W)`` normalised HU -> ``(N, 1, H, W)`` vessel logits.

    Args:
        in_slices: adjacent axial frames fed as channels (odd; the centre one is segmented).
        channels: feature channels per resolution level, coarsest last (at least two levels).
        stem_factor: space-to-depth factor of the lossless stem (1 disables it, 2 or 4).

    ``H`` and ``W`` must be multiples of :attr:`size_multiple`; :meth:`pad_to_multiple` helps.

    Examples::

        >>> net = UNet25D(in_slices=3, channels=(16, 32, 64), stem_factor=2)
        >>> net(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, in_slices: int = 3, channels: Sequence[int] = (16, 32, 64),
                 stem_factor: int = 2) -> None:
        super().__init__()
        if not isinstance(in_slices, int) or in_slices < 1 or in_slices % 2 == 0:
            raise ValueError(f"in_slices must be a positive odd integer, got {in_slices!r}")
        channels = tuple(channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels!r}")
        if any((not isinstance(c, int)) or c < 1 for c in channels):
            raise ValueError(f"channels must be positive integers, got {channels!r}")
        if stem_factor not in (1, 2, 4):
            raise ValueError(f"stem_factor must be 1, 2 or 4, got {stem_factor!r}")
        if len(channels) > 5:
            warnings.warn(f"{len(channels)} levels is deep for a CPU model", stacklevel=2)
        self.in_slices = in_slices
        self.channels = channels
        self.stem_factor = stem_factor
        #: ``H`` and ``W`` must be divisible by this.
        self.size_multiple: int = stem_factor * 2 ** (len(channels) - 1)

        s2 = stem_factor * stem_factor
        self.unshuffle = nn.PixelUnshuffle(stem_factor) if stem_factor > 1 else nn.Identity()
        self.encoders = nn.ModuleList()
        prev = in_slices * s2
        for ch in channels:
            self.encoders.append(ConvBlock(prev, ch))
            prev = ch
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for ch in reversed(channels[:-1]):
            self.ups.append(nn.ConvTranspose2d(prev, ch, 2, stride=2))
            self.decoders.append(ConvBlock(2 * ch, ch))
            prev = ch
        self.head = nn.Conv2d(prev, s2, 1)
        self.shuffle = nn.PixelShuffle(stem_factor) if stem_factor > 1 else nn.Identity()

    def config(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the network next to its ``state_dict``."""
        return {"in_slices": self.in_slices, "channels": list(self.channels),
                "stem_factor": self.stem_factor}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.unshuffle(x)
        skips: list[torch.Tensor] = []
        n_enc = len(self.encoders)
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < n_enc - 1:
                skips.append(x)
                x = self.pool(x)
        for j, (up, dec) in enumerate(zip(self.ups, self.decoders)):
            x = up(x)
            x = dec(torch.cat([x, skips[n_enc - 2 - j]], dim=1))
        return self.shuffle(self.head(x))


UNet = UNet25D


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims of ``x`` at the bottom/right (replicate) to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` to crop back to.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def slice_stack(frames: torch.Tensor, centres: Sequence[int] | torch.Tensor, k: int) -> torch.Tensor:
    """``(N, k, H, W)`` inputs: for each centre index, the ``k`` frames around it (edge-clamped).

    ``frames`` is ``(Z, H, W)`` (already normalised).
    """
    z = int(frames.shape[0])
    half = k // 2
    c = torch.as_tensor(centres, dtype=torch.long).view(-1, 1)
    idx = (c + torch.arange(-half, half + 1).view(1, -1)).clamp_(0, z - 1)
    return frames[idx]


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fold every eval-mode ``Conv2d -> BatchNorm2d`` pair inside ``nn.Sequential`` s (in place)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            layers = list(child)
            out: list[nn.Module] = []
            i = 0
            while i < len(layers):
                if (i + 1 < len(layers) and isinstance(layers[i], nn.Conv2d)
                        and isinstance(layers[i + 1], nn.BatchNorm2d)):
                    out.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
                    i += 2
                else:
                    out.append(layers[i])
                    i += 1
            setattr(module, name, nn.Sequential(*out))
        else:
            fuse_conv_bn(child)
    return module
