"""Defaults shared by the library, the CLI, the app and the experiments: one home per fact.

Everything that more than one entry point needs to agree on lives here once, and every user
imports it from here: the rate grids, the HU windows of the sample mapping, the PSNR peak, the
default agent checkpoints and where the shared data is. Lists of *names* (methods, tuning
strategies, hand-crafted shapes) are not kept here: they are the keys of the registries next to
the code they name (:data:`dmic_core.methods.REGISTRY`, :data:`dmic_core.agents.strategies.STRATEGIES`,
:data:`dmic_core.agents.handcrafted.SHAPES`), so a name cannot exist without its implementation.

This module imports nothing heavy (no torch, no codecs): the CLI's argument parsers and the
app's widgets read it at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from dmic_core.volume import HU_MAX, HU_MIN

#: The repository's root folder (the parent of ``dmic_core``).
REPO_ROOT = Path(__file__).resolve().parent.parent

# --- rate grids ---------------------------------------------------------------------------------

#: Paper QPs of a rate curve: base QPs of constant-QP HEVC and of the rate-control anchors, QP_I
#: of the hand-crafted maps (clipped to the paper's QP_I range there). One grid for sweeps, batches,
#: the app and the experiments, so their curves cover the same rates and their BDs compare.
QP_GRID: tuple[int, ...] = (12, 17, 22, 27, 32, 37, 42)
#: DMIC lambdas of a rate curve (reward ``-(R + lambda * D)``, 0..100).
LAMBDA_GRID: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)
#: The agents' evaluation protocol (``dmic evaluate``): at least eight rate points per method, so
#: each BD rests on curves, not on three points. Base QPs of the anchors; QP_I of the rules that
#: take one (hand-crafted maps, gop8, the oracle; the paper's QP_I range 14..37 from 17 up: QP_I 14
#: costs the most encoder time and lies far above where accuracy saturates); DMIC lambdas.
EVALUATION_QPS: tuple[int, ...] = (14, 18, 22, 26, 30, 34, 38, 42)
EVALUATION_QP_IS: tuple[int, ...] = (17, 20, 23, 26, 29, 32, 35, 37)
EVALUATION_LAMBDAS: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: The smallest shared fraction of two curves' joint mIoU range for the protocol to report a BD;
#: below it the BD is "n/a" with the overlap stated, never extrapolated.
MIN_BD_OVERLAP = 0.3
#: What the Compress page preselects from the grids: four HEVC base QPs and four DMIC lambdas, the
#: fewest points per curve a BD number needs (:data:`dmic_core.metrics.bd.MIN_POINTS`), so the
#: default job always can give BD-rate. With :data:`APP_QUICK_SLICES` (the page's quick-run slab) it
#: finishes in a few minutes on two cores.
APP_QPS: tuple[int, ...] = (22, 27, 32, 37)
APP_LAMBDAS: tuple[float, ...] = (0.0, 1.0, 10.0, 100.0)
#: Slices of the Compress page's "quick run" slab: the middle frames of the volume.
APP_QUICK_SLICES: int = 16
#: What the Fine-tune page's "Compare on current volume" runs for a tuned checkpoint against HEVC:
#: the grid without its two finest QPs (where mIoU has long saturated) and four lambdas spanning
#: the range, nine encodes: a check of the checkpoint, not a full sweep.
COMPARISON_QPS: tuple[int, ...] = QP_GRID[2:]
COMPARISON_LAMBDAS: tuple[float, ...] = (0.0, 1.0, 10.0, 100.0)

# --- HU windows of the sample mapping ------------------------------------------------------------

#: Bit depths the codecs are driven at.
BIT_DEPTHS: tuple[int, ...] = (8, 10, 12)
#: The full CT range as a half-open window: 4096 HU, one level each at 12 bits.
FULL_WINDOW: tuple[float, float] = (float(HU_MIN), float(HU_MAX + 1))
#: The paper's 1024-HU CCTA window (4 HU per 8-bit level).
CCTA_WINDOW: tuple[float, float] = (-200.0, 824.0)


def default_window(bit_depth: int) -> tuple[float, float]:
    """The HU window coded at ``bit_depth`` when none is given: the full range at 12 bits (one HU
    per level, nothing clipped), the CCTA window at 8 and 10 bits.

    The one rule for every path (:class:`dmic_core.transforms.hu.SampleMapping`, the CLI, batches,
    the app); a paper QP means the same HU step under either window (:func:`dmic_core.codecs.qp.qp_shift`).
    """
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit depth must be one of {BIT_DEPTHS}, got {bit_depth}")
    return FULL_WINDOW if bit_depth == 12 else CCTA_WINDOW


#: Window of the agents' "CCTA intensity" input channel (:mod:`dmic_core.agents.features`). Not the
#: coding window: it is a feature normalisation the shipped agents were trained with, so changing
#: it would silently change their decisions.
FEATURE_CCTA_WINDOW: tuple[float, float] = (-200.0, 800.0)

# --- metrics -------------------------------------------------------------------------------------

#: PSNR peak in HU: ``HU_MAX - HU_MIN = 4095``, the span the 12-bit mapping keeps whole, so PSNRs
#: compare across bit depths and windows (real encodes, the agents' environment and surrogate).
PSNR_PEAK_HU: float = float(HU_MAX - HU_MIN)

# --- agent checkpoints (file names under assets/) -------------------------------------------------

#: The agents DMIC uses when no checkpoint is named (sweeps, ``dmic compress``, batches, the app).
DEFAULT_AGENTS = "agents_dmic.pt"
#: The source-domain agents that few-shot tuning starts from (``dmic finetune``, experiments).
PRETRAINED_AGENTS = "agents_pretrained.pt"

# --- shared data ----------------------------------------------------------------------------------

#: Environment variable that points at the shared data folder (real CT used by benches and tests).
SHARED_DATA_ENV = "DMIC_SHARED_DATA"


def shared_data_dir() -> Path:
    """The shared data folder: ``$DMIC_SHARED_DATA``, else ``../shared/data`` next to the repository.

    Code and documents name shared data through this (or as ``../shared/data/...``), never by a
    machine's absolute path.
    """
    value = os.environ.get(SHARED_DATA_ENV)
    return Path(value).expanduser() if value else REPO_ROOT.parent / "shared" / "data"


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it or next to it (``../shared/...``),
    else unchanged: what reports write, so committed results carry no machine's absolute paths."""
    resolved = Path(path).expanduser().resolve()
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        try:
            return prefix + resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


__all__ = ["APP_LAMBDAS", "APP_QPS", "APP_QUICK_SLICES", "BIT_DEPTHS", "CCTA_WINDOW", "COMPARISON_LAMBDAS", "COMPARISON_QPS", "DEFAULT_AGENTS", "FEATURE_CCTA_WINDOW",
           "EVALUATION_LAMBDAS", "EVALUATION_QPS", "EVALUATION_QP_IS", "FULL_WINDOW", "LAMBDA_GRID",
           "MIN_BD_OVERLAP", "PRETRAINED_AGENTS", "PSNR_PEAK_HU", "QP_GRID", "REPO_ROOT",
           "SHARED_DATA_ENV", "default_window", "repo_relative", "shared_data_dir"]
