"""The diagnosis task: coronary-artery segmentation of (decoded) CCTA volumes.

``load_segmenter("builtin" | "builtin-bf16" | "gt" | path)`` returns a :class:`Segmenter` whose
``segment(volume)`` gives a uint8 ``(Z, Y, X)`` vessel mask on the volume's canonical grid.
Heavy imports (torch) happen only when a model segmenter is built.
"""

from dmic_core.segmentation.base import DEFAULT_THRESHOLD, Segmenter
from dmic_core.segmentation.ground_truth import GroundTruthSegmenter
from dmic_core.segmentation.registry import SEGMENTERS, load_segmenter, register_segmenter

__all__ = ["DEFAULT_THRESHOLD", "GroundTruthSegmenter", "SEGMENTERS", "Segmenter", "load_segmenter",
           "register_segmenter", "UNetSegmenter", "TorchScriptSegmenter"]


def __getattr__(name: str):
    if name == "UNetSegmenter":
        from dmic_core.segmentation.builtin import UNetSegmenter

        return UNetSegmenter
    if name == "TorchScriptSegmenter":
        from dmic_core.segmentation.torchscript import TorchScriptSegmenter

        return TorchScriptSegmenter
    raise AttributeError(name)
