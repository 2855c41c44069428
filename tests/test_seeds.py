"""The seed registry keeps training, selection and evaluation data apart (dmic_core.datasets.seeds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dmic_core.agents.train import SOURCE_HELDOUT_SEEDS, SOURCE_SEEDS
from dmic_core.datasets.seeds import EVALUATION_SEEDS, SEED_RANGES, overlapping_ranges, role_of, seed_range

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_ranges_share_a_seed() -> None:
    assert overlapping_ranges() == []
    assert len(EVALUATION_SEEDS) >= 12
    assert all(role_of(s).role == "evaluation" for s in EVALUATION_SEEDS)


def test_code_defaults_come_from_the_registry() -> None:
    from dmic_core.segmentation.config import TEST_SEEDS, TRAIN_SEEDS, VAL_SEEDS

    assert tuple(TRAIN_SEEDS) == tuple(seed_range("segmenter-train").seeds)
    assert tuple(VAL_SEEDS) == tuple(seed_range("segmenter-val").seeds)
    assert tuple(TEST_SEEDS) == tuple(seed_range("segmenter-test").seeds)
    assert SOURCE_SEEDS == tuple(seed_range("agents-source").seeds)
    assert SOURCE_HELDOUT_SEEDS == tuple(seed_range("agents-source-check").seeds)


def _seeds_named(command: str) -> set[int]:
    """Seeds a CLI command line names: ``--seed N [--count K]`` and ``--seeds A:B``."""
    seeds: set[int] = set()
    for m in re.finditer(r"--seed\s+(\d+)(?:\s+--count\s+(\d+))?", command):
        start, count = int(m.group(1)), int(m.group(2) or 1)
        seeds.update(range(start, start + count))
    for m in re.finditer(r"--seeds\s+(\d+):(\d+)", command):
        seeds.update(range(int(m.group(1)), int(m.group(2))))
    return seeds


def test_parser_reads_seed_options() -> None:
    assert _seeds_named("dmic phantom --seed 7000 --count 3 --out x && y --seeds 5001:5003") == {
        7000, 7001, 7002, 5001, 5002}


def test_no_shipped_model_was_made_or_chosen_with_an_evaluation_seed() -> None:
    manifest = json.loads((ROOT / "assets" / "manifest.json").read_text())
    for name, entry in manifest.items():
        used = _seeds_named(entry.get("reproduce", ""))
        assert not used & set(EVALUATION_SEEDS), f"{name} was made with evaluation seeds"
        unknown = sorted(s for s in used if role_of(s) is None)
        assert not unknown, f"{name} names seeds outside the registry: {unknown}"
    for card in (ROOT / "assets").glob("*.md"):
        used = _seeds_named(card.read_text())
        assert not used & set(EVALUATION_SEEDS), f"{card.name} names evaluation seeds in a command"


def test_every_range_has_a_known_role() -> None:
    assert {r.role for r in SEED_RANGES} <= {"train", "select", "test", "evaluation"}


def test_only_validation_and_training_seeds_may_choose() -> None:
    import pytest

    from dmic_core.datasets.seeds import selection_seeds

    assert selection_seeds("6003, 6021,") == [6003, 6021]
    for bad in ("6003,9000", "3001", "123456"):  # an evaluation seed, a test seed, an unregistered one
        with pytest.raises(ValueError, match=bad.split(",")[-1]):
            selection_seeds(bad)
