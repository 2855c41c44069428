"""Pick a segmenter by name or file: ``"builtin"``, ``"builtin-bf16"``, ``"builtin-lite"``, ``"gt"`` or a
path to a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dmic_core.errors import DmicInputError
from dmic_core.segmentation.base import Segmenter
from dmic_core.volume import Volume

#: Named segmenters: name -> factory(label) (the label is only used by "gt").
SEGMENTERS: dict[str, Callable[..., Segmenter]] = {}


def register_segmenter(name: str) -> Callable[[Callable[..., Segmenter]], Callable[..., Segmenter]]:
    def decorator(factory: Callable[..., Segmenter]) -> Callable[..., Segmenter]:
        SEGMENTERS[name] = factory
        return factory

    return decorator


def named_segmenter_unavailable(name: str) -> str | None:
    """Why the named model cannot run here (its weights are missing, or it needs native bf16), or
    None. Imports torch only for the bf16 model's CPU check."""
    from dmic_core.segmentation.config import named_weights_path

    try:
        named_weights_path(name)
    except FileNotFoundError as exc:
        return " ".join(str(exc).split())
    if name == "builtin-bf16":
        from dmic_core.segmentation.builtin import NO_NATIVE_BF16, cpu_has_native_bf16

        if not cpu_has_native_bf16():
            return NO_NATIVE_BF16
    return None


@register_segmenter("builtin")
def _builtin(label: np.ndarray | Volume | None = None, **kwargs) -> Segmenter:
    from dmic_core.segmentation.builtin import UNetSegmenter

    return UNetSegmenter(**kwargs)


@register_segmenter("builtin-bf16")
def _builtin_bf16(label: np.ndarray | Volume | None = None, **kwargs) -> Segmenter:
    """The shipped U-Net in bfloat16: about twice as fast, masks not bit-identical to ``builtin``."""
    from dmic_core.segmentation.builtin import UNetSegmenter

    return UNetSegmenter(precision="bfloat16", **kwargs)


@register_segmenter("builtin-lite")
def _builtin_lite(label: np.ndarray | Volume | None = None, **kwargs) -> Segmenter:
    """The lighter shipped U-Net (a quarter of the multiply-adds; its own weights and results)."""
    from dmic_core.segmentation.builtin import UNetSegmenter
    from dmic_core.segmentation.config import named_weights_path

    return UNetSegmenter(named_weights_path("builtin-lite"), **kwargs)


@register_segmenter("gt")
def _ground_truth(label: np.ndarray | Volume | None = None, **kwargs) -> Segmenter:
    from dmic_core.segmentation.ground_truth import GroundTruthSegmenter

    if label is None:
        raise DmicInputError("the 'gt' segmenter needs the reference label")
    return GroundTruthSegmenter(label)


def load_segmenter(spec: str | Path = "builtin", *, label: np.ndarray | Volume | None = None,
                   **kwargs) -> Segmenter:
    """A segmenter for ``spec``.

    Args:
        spec: ``"builtin"`` (shipped U-Net), ``"builtin-bf16"`` (the same in bfloat16), ``"builtin-lite"``
            (the lighter shipped U-Net), ``"gt"`` (passes ``label`` through) or a path to a
            model file: a TorchScript ``.pt`` (see :mod:`dmic_core.segmentation.torchscript`) or
            DMIC U-Net weights written by ``dmic segment-train``.
        label: reference mask, required for ``"gt"``.
        kwargs: passed to the segmenter (e.g. ``batch_size``, ``threads``).
    """
    key = str(spec)
    if key in SEGMENTERS:
        return SEGMENTERS[key](label=label, **kwargs)
    path = Path(key)
    if not path.is_file():
        raise DmicInputError(f"unknown segmenter {key!r}: use one of {sorted(SEGMENTERS)} or a "
                             f"path to a TorchScript/weights file")
    import zipfile

    from dmic_core.segmentation.builtin import FORMAT, UNetSegmenter
    from dmic_core.segmentation.torchscript import TorchScriptSegmenter

    # TorchScript archives hold code/ and constants.pkl; plain torch.save files do not.
    is_script = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_script = any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())
    if is_script:
        return TorchScriptSegmenter(path, **kwargs)
    try:
        return UNetSegmenter(path, **kwargs)
    except DmicInputError as exc:
        raise DmicInputError(f"neither a TorchScript model nor {FORMAT} weights ({exc})", path) from exc
