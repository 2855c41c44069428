"""What defines a few-shot tuning run (:class:`FinetuneConfig`), what it ends with
(:class:`FinetuneResult`), the agents it starts from and its K:10:10 split of the dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dmic_core.agents.strategies import DEFAULT_STRATEGY, STRATEGY_NAMES
from dmic_core.defaults import REPO_ROOT
from dmic_core.errors import DmicInputError
from dmic_core.finetune.data import SLAB_FRAMES, Split, split_cases

DEFAULT_CACHE_DIR = REPO_ROOT / "work_dirs" / "cache" / "finetune"


@dataclass
class FinetuneConfig:
    """Everything that defines a few-shot tuning run (stored in the checkpoint's meta).

    Attributes:
        data: ImageCAS-layout folder (``{id}.img.nii.gz`` + ``{id}.label.nii.gz``) or dataset CSV.
        shots: K, the number of labelled training volumes (paper: 1, 3, 5); also the batch size.
        strategy: one of the paper's eight (see :mod:`dmic_core.agents.strategies`).
        iterations: A2C updates (paper: 1000).
        pretrained: agents to start from (default: ``assets/agents_pretrained.pt``).
        split_seed: seed of the K:10:10 split; ``seed``: seed of the A2C run (sampling, init).
        clip_frames / clips_per_volume / slab: each training volume gives ``clips_per_volume``
            clips of ``clip_frames`` frames spread over its ``slab``-slice heart slab.
        preset: x265 preset of the surrogate's encodes (evaluation always uses the task coding).
        segmenter: the target task's model (default: the built-in coronary U-Net).
        val_volumes: 0 keeps the last iteration (the paper's protocol). N > 0 also cuts clips from
            the first N validation volumes (surrogates built like the training ones), scores the
            greedy agents there every 100 iterations and writes the best-scoring iteration as the
            output (``X.pt``; the last one stays in ``X.last.pt``): model selection on validation
            data, never on test data.
        actor_update: how the actor learns (:data:`dmic_core.agents.a2c.ADVANTAGES`): ``sampled``
            is the paper's A2C estimate; ``all_actions`` / ``greedy`` use the surrogate's value of
            every action (the default, ``greedy``, is the one that reaches the optimum).
        lambda_zero_prob: share of training episodes at lambda = 0 (rate only).
        rate_edge_bits / rate_edge_halving: the surrogate's mixed-QP rate correction
            (:attr:`dmic_core.agents.env.ClipCache.edge_rate`): bits per unit of offset step between
            neighbouring CTUs at QP_I 32, doubling every ``rate_edge_halving`` QPs finer. 0 (the
            default) prices decisions as the plain mosaic; ``bench/surrogate_rate_fit.py`` fits it.
        rate_qp_cap: the surrogate's rate saturation (:attr:`dmic_core.agents.env.ClipCache.rate_qp_cap`),
            fitted by the same script; None: none.
    """

    data: str
    shots: int = 1
    strategy: str = DEFAULT_STRATEGY
    iterations: int = 1000
    pretrained: str | None = None
    split_seed: int = 0
    seed: int = 0
    lr_frame: float = 1e-3
    lr_ctu: float = 1e-4
    entropy_frame: float = 0.01
    entropy_ctu: float = 0.01
    ctu_grad_samples: int = 256
    clip_frames: int = 9
    clips_per_volume: int = 2
    slab: int = SLAB_FRAMES
    preset: str | None = "veryfast"
    space: str = "paper"
    segmenter: str = "builtin"
    workers: int = 2
    threads: int | None = None
    n_val: int = 10
    n_test: int = 10
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    checkpoint_every: int = 100
    val_volumes: int = 0
    actor_update: str = "greedy"
    lambda_zero_prob: float = 0.1
    rate_edge_bits: float = 0.0
    rate_edge_halving: float = 6.0
    rate_qp_cap: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGY_NAMES:
            raise DmicInputError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGY_NAMES)}")
        if self.shots < 1:
            raise DmicInputError(f"--shots must be at least 1, got {self.shots}")
        if self.iterations < 0:
            raise DmicInputError(f"--iterations must be >= 0, got {self.iterations}")
        if self.rate_edge_bits < 0 or self.rate_edge_halving <= 0:
            raise DmicInputError("--rate-edge-bits must be >= 0 and --rate-edge-halving > 0")
        if self.clip_frames < 1 or self.clips_per_volume < 1:
            raise DmicInputError("clip_frames and clips_per_volume must be at least 1")
        if not 0 <= self.val_volumes <= self.n_val:
            raise DmicInputError(f"--val-volumes must be between 0 and {self.n_val}, got {self.val_volumes}")

    def coding_setup(self):
        from dmic_core.pipeline import TASK_CODING, CodingSetup

        if self.preset is None:
            return TASK_CODING
        return CodingSetup(codec=TASK_CODING.codec, preset=self.preset, bit_depth=TASK_CODING.bit_depth,
                           window=TASK_CODING.window)


@dataclass
class FinetuneResult:
    checkpoint: str
    status: str                      # "done" or "cancelled"
    iteration: int
    iterations: int
    split: dict[str, Any]
    trainable_parameters: int
    trainable_by_agent: dict[str, int]
    total_parameters: int
    seconds: dict[str, float] = field(default_factory=dict)
    history_tail: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_pretrained() -> Path:
    """The shipped pretrained agents tuning starts from (a :class:`DmicInputError` naming them when missing)."""
    from dmic_core.agents.inference import pretrained_agents_path

    return pretrained_agents_path()


def discover_cases(data: str | Path) -> dict[str, tuple[str, str | None]]:
    """``case_id -> (image, label)`` of an ImageCAS-layout folder or dataset CSV."""
    from dmic_core.datasets.discovery import discover

    return {e.case_id: (e.image, e.label) for e in discover(data)}


def make_split(cfg: FinetuneConfig) -> tuple[Split, dict[str, tuple[str, str | None]]]:
    """The run's K:10:10 split of the labelled cases, and every labelled case's files."""
    cases = discover_cases(cfg.data)
    labelled = {k: v for k, v in cases.items() if v[1] is not None}
    if len(labelled) < cfg.shots:
        raise DmicInputError(f"{cfg.shots}-shot tuning needs {cfg.shots} labelled volumes; "
                             f"{cfg.data} has {len(labelled)}")
    return split_cases(sorted(labelled), cfg.shots, cfg.split_seed, cfg.n_val, cfg.n_test), labelled
