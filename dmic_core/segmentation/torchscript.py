"""A user's own segmentation model, as a TorchScript file.

Contract of the scripted module (``torch.jit.save`` of a ``torch.jit.script``/``trace``):

* **Input**: float32 tensor ``(N, k, H, W)``: ``N`` frames to segment, each with its ``k``
  adjacent axial frames (centre frame in the middle channel; frames beyond the volume's ends
  repeat the edge frame), in **raw Hounsfield units** on the canonical grid (rows towards
  posterior, columns towards the patient's left). The model does its own normalisation.
* **Output**: ``(N, 1, H, W)`` or ``(N, H, W)`` vessel **logits** of the centre frames (sigmoid
  gives the probability; 0 is the 0.5 cut), on the same ``H x W`` grid.
* **Optional attributes** (plain ``int``/``bool`` attributes of the module):
  ``in_slices`` (``k``, odd, default 1), ``size_multiple`` (``H``/``W`` are padded at the
  bottom/right by edge replication to a multiple of it and the output cropped back; default 1)
  and ``outputs_probabilities`` (``True`` if it returns probabilities instead of logits).

It runs on CPU, ``batch_size`` frames at a time, under ``torch.inference_mode``.
:func:`export_torchscript` writes the built-in U-Net in exactly this form.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from dmic_core.errors import DmicInputError
from dmic_core.segmentation._inference import collect, run_slices, torch_threads
from dmic_core.segmentation.base import DEFAULT_THRESHOLD, Segmenter, as_hu_array
from dmic_core.segmentation.unet import HU_WINDOW, UNet25D, fuse_conv_bn
from dmic_core.volume import Volume


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """TorchScript is deprecated upstream in favour of torch.export but stays this contract's format."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        yield


class HUInputUNet(nn.Module):
    """The built-in U-Net behind the TorchScript contract: raw HU in, logits out."""

    def __init__(self, net: UNet25D) -> None:
        super().__init__()
        self.net = net
        self.in_slices: int = net.in_slices
        self.size_multiple: int = net.size_multiple
        self.outputs_probabilities: bool = False
        self.lo: float = float(HU_WINDOW[0])
        self.hi: float = float(HU_WINDOW[1])

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        x = ((hu - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        return self.net(x)


def export_torchscript(net: UNet25D, path: str | Path) -> Path:
    """Script ``net`` (BatchNorm folded) behind :class:`HUInputUNet` and save it to ``path``."""
    import copy

    module = HUInputUNet(fuse_conv_bn(copy.deepcopy(net).eval())).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_jit():
        torch.jit.save(torch.jit.script(module), str(path))
    return path


class TorchScriptSegmenter(Segmenter):
    """Segment with a TorchScript model that follows the contract in this module's docstring.

    Args:
        path: the ``.pt`` file written by ``torch.jit.save``.
        batch_size: frames per forward pass.
        threads: intra-op CPU threads (default: all available cores).
        threshold: probability cut for :meth:`segment`.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 4, threads: int | None = None,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DmicInputError("TorchScript model not found", self.path)
        try:
            with _quiet_jit():
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - any load failure is bad input
            raise DmicInputError(f"not a TorchScript model ({str(exc).splitlines()[0][:120]})",
                                 self.path) from exc
        self.in_slices = int(getattr(self.module, "in_slices", 1))
        self.size_multiple = int(getattr(self.module, "size_multiple", 1))
        self.outputs_probabilities = bool(getattr(self.module, "outputs_probabilities", False))
        if self.in_slices < 1 or self.in_slices % 2 == 0:
            raise DmicInputError(f"model attribute in_slices must be odd and positive, got "
                                 f"{self.in_slices}", self.path)
        if self.size_multiple < 1:
            raise DmicInputError(f"model attribute size_multiple must be >= 1, got {self.size_multiple}",
                                 self.path)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.threads = threads
        self.threshold = float(threshold)
        self.name = f"torchscript:{self.path.name}"

    def _run(self, volume: Volume | np.ndarray, kind: str) -> np.ndarray:
        hu = as_hu_array(volume)
        out, emit = collect(hu.shape, kind, self.threshold, self.outputs_probabilities)

        def model(x: torch.Tensor) -> torch.Tensor:
            y = self.module(x)
            if not isinstance(y, torch.Tensor) or y.ndim not in (3, 4) or y.shape[-2:] != x.shape[-2:] \
                    or y.shape[0] != x.shape[0] or (y.ndim == 4 and y.shape[1] != 1):
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise DmicInputError(f"model returned {got} for input {tuple(x.shape)}; expected "
                                     f"(N, 1, H, W) or (N, H, W)", self.path)
            return y

        with torch_threads(self.threads), torch.inference_mode():
            run_slices(hu, model, in_slices=self.in_slices, size_multiple=self.size_multiple,
                       batch_size=self.batch_size, prep=lambda t: t.to(torch.float32), emit=emit,
                       channels_last=False)
        return out

    def probabilities(self, volume: Volume | np.ndarray) -> np.ndarray:
        return self._run(volume, "prob")

    def segment(self, volume: Volume | np.ndarray) -> np.ndarray:
        return self._run(volume, "mask")
