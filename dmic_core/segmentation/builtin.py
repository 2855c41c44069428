"""The shipped coronary-artery segmenters: :class:`~dmic_core.segmentation.unet.UNet25D` weights
trained on this project's synthetic CCTA phantoms and real CT texture: the default
(``assets/segmenter_unet.pt``, model card ``assets/segmenter_unet.md``) and an opt-in lighter one
with a quarter of its multiply-adds (``assets/segmenter_lite.pt``, ``assets/segmenter_lite.md``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmic_core.errors import DmicInputError
from dmic_core.segmentation._inference import collect, run_volume, torch_threads
from dmic_core.segmentation.base import DEFAULT_THRESHOLD, Segmenter, as_hu_array
from dmic_core.segmentation.config import (LITE_WEIGHTS_NAME, NAMED_WEIGHTS, TRAIN_SLICE_MM,  # noqa: F401 - re-exported
                                           WEIGHTS_NAME, named_weights_path)
from dmic_core.segmentation.unet import HU_WINDOW, UNet25D, fuse_conv_bn, normalize_hu
from dmic_core.volume import Volume

#: Checkpoint format written by :func:`save_weights` and training.
FORMAT = "dmic-segmenter-unet/1"
#: Arithmetic of the forward pass: ``"float32"`` (default; every recorded result) or ``"bfloat16"``
#: (autocast: the U-Net about 1.5x as fast on CPUs with native bf16; at most 6.5 voxels in 10^6
#: differ from float32's masks, measured by ``bench/segmenter_precision.py``).
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


#: Why bfloat16 segmentation is refused here (the constructor's error and the app's probe say the same).
NO_NATIVE_BF16 = ("bfloat16 segmentation needs a CPU with native bf16 (AVX-512 BF16 or AMX); "
                  "this one would emulate it, slower than float32")


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions natively here (AVX-512 BF16 or AMX).

    Without it torch emulates bf16 and the "fast" path is slower than float32, so it is refused.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without the private probe
        return False


def default_weights_path() -> Path:
    """``assets/segmenter_unet.pt`` (raises ``FileNotFoundError`` with the reproduce hint)."""
    return named_weights_path("builtin")


def save_weights(net: UNet25D, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``{"format", "config", "state_dict", "meta"}`` (loadable with ``weights_only``)."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    payload = {"format": FORMAT, "config": net.config(), "state_dict": state,
               "meta": {"hu_window": list(HU_WINDOW), **(meta or {})}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_weights(path: str | Path) -> tuple[UNet25D, dict[str, Any]]:
    """Rebuild the network from a :func:`save_weights` file (or a training checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise DmicInputError("segmenter weights not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input
        raise DmicInputError(f"not a DMIC segmenter weights file ({exc.__class__.__name__})", path) from exc
    if isinstance(payload, dict) and "model" in payload and "format" not in payload:
        payload = payload["model"]  # a training checkpoint: {"model": weights payload, ...}
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DmicInputError(f"not a DMIC segmenter weights file (expected format {FORMAT})", path)
    net = UNet25D(**payload["config"])
    net.load_state_dict(payload["state_dict"])
    meta = dict(payload.get("meta", {}))
    if tuple(meta.get("hu_window", HU_WINDOW)) != tuple(HU_WINDOW):
        raise DmicInputError(f"weights were trained with HU window {meta['hu_window']}, this code "
                             f"normalises with {list(HU_WINDOW)}", path)
    return net.eval(), meta


def _weights_name(path: Path) -> str:
    """The logged name of a weights file: ``builtin-unet`` + the registry suffix for a shipped one
    (``builtin-unet``, ``builtin-unet-lite``: :data:`NAMED_WEIGHTS`), ``unet:<file name>`` otherwise."""
    from dmic_core.assets import ASSETS_DIR

    resolved = path.resolve()
    for spec, file in NAMED_WEIGHTS.items():  # "builtin" before "builtin-bf16", which shares its file
        if (ASSETS_DIR / file).resolve() == resolved:
            return UNetSegmenter.name + spec.removeprefix("builtin")
    return f"unet:{path.name}"


class UNetSegmenter(Segmenter):
    """The built-in 2.5-D U-Net segmenter.

    Args:
        weights: weights file (default: the shipped ``assets/segmenter_unet.pt``), or an
            already-built network.
        batch_size: frames per forward pass; memory grows linearly with it. The masks do not
            depend on it (``tests/test_segmentation.py``); 2 is the fastest on CPU, where larger
            batches' activations exceed glibc's adaptive mmap threshold (issue 17).
        threads: intra-op CPU threads (default: all cores this process may use).
        resample: ``"auto"`` resamples the volume to the training geometry before the network:
            in-plane to the training pixel size and along z to the training slice spacing
            (linear), each when the volume's differs by more than 25 % (the augmentation's zoom
            range); the logits are resampled back, so masks lie exactly on the input grid.
            ``False`` never resamples. Bare arrays (no spacing) are never resampled.
        threshold: probability cut for :meth:`segment`.
        precision: one of :data:`PRECISIONS`. ``"bfloat16"`` trades exact float32 masks for
            speed (the whole-volume job's two U-Net passes are most of its time, issue 17); it
            needs native bf16 (:func:`cpu_has_native_bf16`).
        name: the name logged with every result and used in cache keys. Default: the shipped
            model's (``builtin-unet``, ``builtin-unet-lite``) for a shipped weights file,
            ``unet:<file name>`` for any other (so that results of other weights never pass for a
            shipped model's), ``unet`` for a network object.
    """

    name = "builtin-unet"

    def __init__(self, weights: str | Path | UNet25D | None = None, *, batch_size: int = 2,
                 threads: int | None = None, resample: str | bool = "auto",
                 threshold: float = DEFAULT_THRESHOLD, precision: str = "float32", name: str | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bfloat16" and not cpu_has_native_bf16():
            raise DmicInputError(f"{NO_NATIVE_BF16}: use the float32 segmenter")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if resample not in ("auto", False):
            raise ValueError(f"resample must be 'auto' or False, got {resample!r}")
        if isinstance(weights, UNet25D):
            net, self.meta = copy.deepcopy(weights), {}
            self.weights_path: Path | None = None
            default_name = "unet"
        else:
            self.weights_path = Path(weights) if weights is not None else default_weights_path()
            net, self.meta = load_weights(self.weights_path)
            default_name = _weights_name(self.weights_path)
        self.name = name or default_name
        self.in_slices = net.in_slices
        self.size_multiple = net.size_multiple
        self.net = fuse_conv_bn(net.eval()).to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.batch_size = int(batch_size)
        self.threads = threads
        self.resample = resample
        self.threshold = float(threshold)
        self.precision = precision
        if precision != "float32":  # results differ from the float32 model's: say so wherever the name is logged
            self.name = f"{self.name}-bf16"
        self.train_spacing = self.meta.get("spacing_mm")
        self.train_slice_mm = float(self.meta.get("slice_mm", TRAIN_SLICE_MM))

    def zoom_for(self, volume: Volume | np.ndarray) -> float:
        """In-plane zoom applied before the network (1.0: none)."""
        if self.resample != "auto" or not isinstance(volume, Volume) or not self.train_spacing:
            return 1.0
        pixel = float(np.sqrt(volume.spacing[1] * volume.spacing[2]))
        ratio = pixel / float(self.train_spacing)
        return ratio if (ratio > 1.25 or ratio < 0.8) else 1.0

    def z_factor_for(self, volume: Volume | np.ndarray) -> float:
        """Frames per input frame after resampling along z (1.0: none)."""
        if self.resample != "auto" or not isinstance(volume, Volume):
            return 1.0
        ratio = float(volume.spacing[0]) / self.train_slice_mm
        return ratio if (ratio > 1.25 or ratio < 0.8) else 1.0

    def _run(self, volume: Volume | np.ndarray, kind: str) -> np.ndarray:
        hu = as_hu_array(volume)
        out, emit = collect(hu.shape, kind, self.threshold)
        fast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16")
        with torch_threads(self.threads), torch.inference_mode(), fast:
            run_volume(hu, self.net, in_slices=self.in_slices, size_multiple=self.size_multiple,
                       batch_size=self.batch_size, prep=normalize_hu, emit=emit,
                       zoom=self.zoom_for(volume), z_factor=self.z_factor_for(volume))
        return out

    def probabilities(self, volume: Volume | np.ndarray) -> np.ndarray:
        return self._run(volume, "prob")

    def segment(self, volume: Volume | np.ndarray) -> np.ndarray:
        return self._run(volume, "mask")
