"""Training settings and the seed split of the shipped segmenter (no torch import: the CLI reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from dmic_core.datasets.seeds import seed_range

if TYPE_CHECKING:
    from dmic_core.segmentation.unet import UNet25D

#: Seed ranges of the shipped model, from the one registry that keeps every range apart.
TRAIN_SEEDS = seed_range("segmenter-train").seeds
VAL_SEEDS = seed_range("segmenter-val").seeds
TEST_SEEDS = seed_range("segmenter-test").seeds

#: File name of the shipped weights under ``assets/`` (the default segmenter).
WEIGHTS_NAME = "segmenter_unet.pt"
#: File name of the opt-in lighter segmenter's weights (issue 17: a quarter of the multiply-adds).
LITE_WEIGHTS_NAME = "segmenter_lite.pt"
#: Shipped weights of each named built-in segmenter (registry name -> file under ``assets/``): the
#: one place the registry, the CLI, cache keys and pre-flight checks look a named model's file up.
NAMED_WEIGHTS: dict[str, str] = {"builtin": WEIGHTS_NAME, "builtin-bf16": WEIGHTS_NAME,
                                 "builtin-lite": LITE_WEIGHTS_NAME}


#: What each named model is, for a person choosing one (the app's labels and help; same keys as
#: :data:`NAMED_WEIGHTS`).
NAMED_SUMMARIES: dict[str, str] = {
    "builtin": "coronary U-Net, the default",
    "builtin-bf16": "the same U-Net in bfloat16: about 1.5x faster where the CPU has native bf16; "
                    "masks not bit-identical to the default's",
    "builtin-lite": "lighter U-Net: a quarter of the work, the default's Dice on held-out phantoms; "
                    "its results are its own (assets/segmenter_lite.md)",
}
if NAMED_SUMMARIES.keys() != NAMED_WEIGHTS.keys():  # pragma: no cover - caught at import by every test
    raise RuntimeError("NAMED_SUMMARIES and NAMED_WEIGHTS must name the same models")


def named_weights_path(name: str) -> Path:
    """The shipped weights file of a named built-in segmenter (:data:`NAMED_WEIGHTS`); raises
    ``FileNotFoundError`` with the reproduce hint when it is missing."""
    from dmic_core.assets import asset_path

    return asset_path(NAMED_WEIGHTS[name])


#: Slice spacing (mm) of the training volumes (phantoms: 0.5 mm frames); inputs are resampled to it.
TRAIN_SLICE_MM = 0.5

#: Where generated training phantoms are cached (git-ignored).
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "work_dirs" / "cache" / "phantoms"

@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and the weights' meta)."""

    train_seeds: Sequence[int] = tuple(TRAIN_SEEDS)
    val_seeds: Sequence[int] = tuple(VAL_SEEDS)
    data_dir: str | None = None  # ImageCAS-layout folder instead of phantoms
    val_fraction: float = 0.15  # share of ImageCAS pairs held out for validation
    size: int = 512
    n_slices: int | None = None
    in_slices: int = 3
    channels: Sequence[int] = (16, 32, 64, 64)
    stem_factor: int = 2
    steps: int = 4000
    batch_size: int = 12
    patch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-5
    vessel_fraction: float = 0.5
    hard_negative_fraction: float = 0.25
    zoom_range: tuple[float, float] = (0.8, 1.25)
    noise_hu: float = 20.0
    blur_prob: float = 0.25
    blur_sigma: tuple[float, float] = (0.3, 0.9)
    seed: int = 0
    checkpoint_every: int = 200
    val_every: int = 500
    threads: int | None = None
    cache_dir: str = str(DEFAULT_CACHE)
    # real CT texture (dmic_core.segmentation.composite): share of patches cut from the real crop's
    # training frames, and the share of those centred on a synthetic coronary
    real_fraction: float = 0.0
    real_vessel_fraction: float = 0.5
    real_patients: int = 48
    real_crop: str | None = None  # folder of the crop (default: the shared data's cta-aorta-crop)
    # start from these weights instead of random initialisation (fine-tuning)
    init_weights: str | None = None
    # model selection: validation Dice minus this times the false-vessel ml on the real crop's
    # *training* frames (only when real_fraction > 0)
    select_false_ml_weight: float = 0.01

    def net(self) -> "UNet25D":
        from dmic_core.segmentation.unet import UNet25D

        return UNet25D(self.in_slices, tuple(self.channels), self.stem_factor)
