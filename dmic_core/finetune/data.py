"""Few-shot data: the K:10:10 split of a labelled dataset, heart slabs, training clips.

* :func:`split_cases` -- a deterministic, disjoint train/val/test split from one recorded seed.
  The test and validation sets depend only on the seed (never on K) and the K training volumes
  of a smaller K are a subset of those of a larger one, so 1-, 3- and 5-shot runs are scored on
  the same test volumes.
* :func:`heart_slab` -- the ``length``-slice slab centred on the mask's z-centroid (the paper
  codes 33-frame clips; CCTA volumes are 128-275 slices, most of them far from the coronaries).
* :func:`clip_windows` -- where the short training clips sit inside a volume's slab.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmic_core.errors import DmicInputError

#: Paper split: K training, 10 validation, 10 test volumes.
N_VAL = 10
N_TEST = 10
#: The paper's clip length (frames) for evaluation.
SLAB_FRAMES = 33


@dataclass(frozen=True)
class Split:
    """A recorded K:val:test split of a dataset's case ids."""

    seed: int
    shots: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    n_cases: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("train", "val", "test"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Split":
        return cls(int(d["seed"]), int(d["shots"]), tuple(d["train"]), tuple(d["val"]), tuple(d["test"]),
                   int(d["n_cases"]))


def split_cases(case_ids: Sequence[str], shots: int, seed: int = 0, n_val: int = N_VAL,
                n_test: int = N_TEST) -> Split:
    """Deterministic disjoint split: one permutation of the sorted ids (from ``seed``) gives
    test = the first ``n_test``, val = the next ``n_val``, train = the next ``shots``.

    With fewer than ``shots + n_val + n_test`` cases, validation shrinks first, then test (at
    least one test volume is kept); fewer than ``shots + 1`` cases is an error.
    """
    ids = sorted(dict.fromkeys(str(c) for c in case_ids))
    if len(ids) != len(case_ids):
        raise DmicInputError("duplicate case ids in the dataset")
    if shots < 1:
        raise DmicInputError(f"shots must be at least 1, got {shots}")
    n = len(ids)
    if n < shots + 1:
        raise DmicInputError(f"{n} labelled volume(s) cannot make a {shots}-shot split with a test volume")
    n_test = max(1, min(n_test, n - shots))
    n_val = max(0, min(n_val, n - shots - n_test))
    order = np.random.default_rng(int(seed)).permutation(n)
    perm = [ids[i] for i in order]
    test = perm[:n_test]
    val = perm[n_test:n_test + n_val]
    # train from what is left after the *full* test/val sets, so it is nested across K
    rest = perm[n_test + n_val:]
    return Split(int(seed), int(shots), tuple(rest[:shots]), tuple(val), tuple(test), n)


def heart_slab(mask: np.ndarray, length: int = SLAB_FRAMES) -> tuple[int, int]:
    """``(start, stop)`` of the ``length``-slice slab centred on the z-centroid of ``mask``
    (``(F, H, W)``); the middle of the volume when the mask is empty; the whole volume when it is
    shorter than ``length``."""
    n = int(mask.shape[0])
    if n <= length:
        return 0, n
    per_slice = np.asarray(mask).reshape(n, -1).sum(axis=1).astype(np.float64)
    centre = n / 2.0 if per_slice.sum() == 0 else float((np.arange(n) * per_slice).sum() / per_slice.sum())
    start = int(round(centre - length / 2.0))
    start = min(max(start, 0), n - length)
    return start, start + length


def clip_windows(slab: tuple[int, int], clip_frames: int, count: int) -> list[tuple[int, int]]:
    """``count`` clips of ``clip_frames`` frames evenly spread over ``slab`` (distinct windows only)."""
    a, b = slab
    length = b - a
    if length <= clip_frames:
        return [(a, b)]
    starts = np.linspace(a, b - clip_frames, max(1, count)).round().astype(int)
    return [(int(s), int(s) + clip_frames) for s in dict.fromkeys(starts.tolist())]


def file_fingerprint(path: str | Path, full: bool = False) -> str:
    """Short content id of a file: size + mtime + name (or its SHA-256 when ``full``)."""
    path = Path(path)
    if full:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()[:16]
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def segmenter_fingerprint(name: str) -> str:
    """Identity of a segmenter for cache keys: the built-in model's weights hash, else the name."""
    from dmic_core.segmentation.config import NAMED_WEIGHTS, named_weights_path

    if name in NAMED_WEIGHTS:
        return name + "-" + file_fingerprint(named_weights_path(name), full=True)
    if Path(name).is_file():
        return "file-" + file_fingerprint(name, full=True)
    return name
