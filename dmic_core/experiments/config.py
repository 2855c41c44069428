"""What the experiments are computed on: the configuration, tuning runs, test cases and curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dmic_core.defaults import LAMBDA_GRID, QP_GRID, REPO_ROOT
from dmic_core.finetune.config import DEFAULT_CACHE_DIR, FinetuneConfig
from dmic_core.finetune.data import SLAB_FRAMES

DEFAULT_WORK_DIR = REPO_ROOT / "work_dirs" / "experiments"
TABLES = ("table1", "table2", "table3", "table4", "fig2")

Log = Callable[[str], None]


@dataclass
class ExperimentConfig:
    """What the tables are computed on and how much is spent.

    Attributes:
        data: labelled target dataset (ImageCAS layout or CSV), split K:10:10 with ``split_seed``.
        extra_volumes: further (unlabelled, e.g. real CT) volumes on which Table I, IV and Fig. 2a
            are also measured; reference = segmentation of the original.
        test_cases: how many of the split's test volumes are evaluated.
        iterations: tuning iterations of the main run (Table I, IV, Fig. 2a: a2c, 1 shot);
            ``variant_iterations``: of the ablations (Table II's shots x {a2c, full}, Table III's
            variants, Fig. 2b/c); equal to ``iterations`` unless the budget asks otherwise.
        ablation_cases: how many of the test volumes the ablation curves are evaluated on
            (default: all ``test_cases``); Table I/IV and Fig. 2a use all of them.
    """

    data: str
    out: str
    work_dir: str = str(DEFAULT_WORK_DIR)
    extra_volumes: tuple[str, ...] = ()
    split_seed: int = 0
    shots: tuple[int, ...] = (1, 3, 5)
    iterations: int = 1000
    variant_iterations: int = 1000
    test_cases: int = 3
    ablation_cases: int | None = None
    slab: int = SLAB_FRAMES
    qps: tuple[float, ...] = QP_GRID
    lambdas: tuple[float, ...] = LAMBDA_GRID
    workers: int = 2
    train_workers: int = 2
    pretrained: str | None = None
    segmenter: str = "builtin"
    clip_frames: int = 9
    clips_per_volume: int = 2
    preset: str | None = "veryfast"
    seed: int = 0
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    #: HEVC engine of the evaluation encodes (the curves); the training surrogate stays x265's.
    codec: str = "x265"

    def finetune_config(self, strategy: str, shots: int, iterations: int) -> FinetuneConfig:
        return FinetuneConfig(data=self.data, shots=shots, strategy=strategy, iterations=iterations,
                              pretrained=self.pretrained, split_seed=self.split_seed, seed=self.seed,
                              clip_frames=self.clip_frames, clips_per_volume=self.clips_per_volume,
                              slab=self.slab, preset=self.preset, segmenter=self.segmenter, workers=self.workers,
                              threads=1, cache_dir=self.cache_dir)


@dataclass(frozen=True)
class RunSpec:
    """A tuning run a table needs."""

    strategy: str
    shots: int
    iterations: int

    @property
    def name(self) -> str:
        return f"{self.strategy}-k{self.shots}-it{self.iterations}"


@dataclass
class TestCase:
    case_id: str
    image: str
    label: str | None
    slices: tuple[int, int]
    domain: str

    @property
    def tag(self) -> str:
        return f"{self.case_id}-{self.slices[0]}-{self.slices[1]}"


@dataclass
class Curve:
    """One rate curve: a sweep method at its settings (dmic: with a checkpoint)."""

    name: str
    method: str
    settings: tuple[float, ...]
    checkpoint: str | None = None
    run: RunSpec | None = None
