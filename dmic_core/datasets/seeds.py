"""Every phantom seed range the project uses, with its role: the one place that keeps them apart.

A figure measured on a volume that chose a model, a seed or a setting is not a result. Phantoms
are drawn from seeds, so keeping data apart means keeping seed ranges apart: the segmenter's
training/validation/test phantoms, the agents' source domain, the few-shot transfer data, and
the **evaluation seeds**, which nothing may train on or select with
(``tests/test_seeds.py`` checks the ranges are disjoint and that no shipped model's
reproduce command names an evaluation seed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedRange:
    """Seeds ``start`` .. ``stop - 1`` and what they are for."""

    name: str
    start: int
    stop: int
    role: str  # "train", "select" (validation / model choice), "test" (held out), or "evaluation"
    purpose: str

    @property
    def seeds(self) -> range:
        return range(self.start, self.stop)

    def __contains__(self, seed: object) -> bool:
        return isinstance(seed, int) and self.start <= seed < self.stop


SEED_RANGES: tuple[SeedRange, ...] = (
    SeedRange("segmenter-train", 1000, 1030, "train", "built-in U-Net training phantoms"),
    SeedRange("segmenter-val", 2000, 2005, "select", "U-Net checkpoint selection"),
    SeedRange("segmenter-test", 3000, 3010, "test", "U-Net held-out accuracy (model card)"),
    SeedRange("agents-source", 5001, 5013, "train", "agents' source-domain pretraining"),
    SeedRange("agents-source-check", 5900, 5902, "select", "pretraining held-out check"),
    SeedRange("agents-bench", 5950, 5951, "test", "agent decision-time benchmark"),
    SeedRange("agents-target", 6000, 6028, "train",
              "default agents' target-task training (split seed 0 of dmic finetune: K=8 or K=16 train; "
              "validation 6003/6021 choose the iteration; real-encode selection on 6003, 6021, 6019, 6004, "
              "6010, 6011, the last four taken from the split's test list, which nothing else uses)"),
    SeedRange("transfer-target", 7000, 7025, "train",
              "few-shot transfer dataset (shots, validation and test curves of the paper's tables)"),
    SeedRange("extended-tuning", 7100, 7101, "train", "extended-space agents' first tuning volume"),
    SeedRange("finetune-tests", 9100, 9104, "test", "tiny datasets of tests/test_finetune.py"),
    SeedRange("compress-bench", 9500, 9510, "test",
              "whole-volume compress benchmark (bench/bench_compress_volume.py) and its identical-results test"),
    SeedRange("evaluation", 9000, 9012, "evaluation",
              "the agents' evaluation protocol: never trained on, never used to choose"),
)

#: The evaluation phantoms of ``dmic evaluate`` (12 volumes).
EVALUATION_SEEDS: range = next(r for r in SEED_RANGES if r.role == "evaluation").seeds


def seed_range(name: str) -> SeedRange:
    """The range called ``name`` (ValueError listing the names otherwise)."""
    for r in SEED_RANGES:
        if r.name == name:
            return r
    raise ValueError(f"unknown seed range {name!r}; known: {', '.join(r.name for r in SEED_RANGES)}")


def role_of(seed: int) -> SeedRange | None:
    """The range a seed belongs to, or ``None`` for a seed the project never uses."""
    return next((r for r in SEED_RANGES if seed in r), None)


def parse_seeds(text: str) -> list[int]:
    """``"A:B"`` (``A`` .. ``B - 1``) or a comma list ``"1,2,3"``: the seed syntax of every command."""
    start, _, stop = text.partition(":")
    return list(range(int(start), int(stop))) if stop else [int(v) for v in text.split(",") if v.strip()]


def selection_seeds(text: str) -> list[int]:
    """The seeds of ``text`` (:func:`parse_seeds`) that may choose a model or a setting (validation
    or training seeds); ValueError naming any evaluation, test or unregistered seed."""
    seeds = parse_seeds(text)
    bad = [s for s in seeds if role_of(s) is None or role_of(s).role in ("evaluation", "test")]
    if bad:
        raise ValueError(f"seeds {bad} are evaluation, test or unregistered seeds: they cannot choose a model or a setting")
    return seeds


def overlapping_ranges() -> list[tuple[str, str]]:
    """Pairs of ranges that share a seed (empty when the registry is sound)."""
    pairs = []
    for i, a in enumerate(SEED_RANGES):
        for b in SEED_RANGES[i + 1:]:
            if a.start < b.stop and b.start < a.stop:
                pairs.append((a.name, b.name))
    return pairs


__all__ = ["EVALUATION_SEEDS", "SEED_RANGES", "SeedRange", "overlapping_ranges", "role_of", "parse_seeds",
           "seed_range", "selection_seeds"]
