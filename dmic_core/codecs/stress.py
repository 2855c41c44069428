"""Stress check of the x265 backend: is every reconstruction what its stream decodes to?

Why: a job once failed with "x265's reconstruction differs from the stream decoded by
libde265", only on a busy machine. This module reproduces such faults at scale: many encodes of
varied settings (preset, bit depth, frame count, frame size, worker threads, CTU offsets) in
parallel worker processes, each compared sample for sample with libde265's decode of its stream,
and each case coded twice to check that the stream is a function of the input alone. Every
mismatch keeps its stream, x265's reconstruction, the decode and the input in a debug folder
with the first differing frame and CTU.

Frames are padded to the codec's ``coded_frame_size`` exactly as :func:`dmic_core.pipeline.code_volume`
does, so a fault this finds is one users would meet. Used by ``tests/test_codec_stress.py`` (a
bounded run) and ``bench/stress_x265_recon.py`` (a long run with CPU burners beside it).
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dmic_core.codecs.qp import CTU_SIZE, ctu_grid_shape, pad_ctu_grid
from dmic_core.transforms.hu import crop_frames, pad_frames

PRESETS = ("ultrafast", "veryfast", "medium", "slow")
BIT_DEPTHS = (8, 10, 12)
#: Frame sizes (height, width) before padding: the one-CTU-wide case, sub-CTU sizes that need
#: padding, partial CTUs, and a few CTUs.
SIZES = ((64, 64), (128, 64), (48, 40), (64, 128), (72, 72), (120, 126), (192, 192), (136, 200))
THREADS = (None, 1, 2)


@dataclass(frozen=True)
class StressCase:
    """One encode, drawn from ``seed``: the same seed always gives the same case and frames."""

    seed: int
    preset: str
    bit_depth: int
    frames: int
    height: int
    width: int
    threads: int | None
    noise: float
    with_offsets: bool

    @classmethod
    def draw(cls, seed: int) -> "StressCase":
        rng = np.random.default_rng(seed)
        height, width = SIZES[int(rng.integers(len(SIZES)))]
        return cls(seed=seed, preset=str(rng.choice(PRESETS)),
                   bit_depth=int(rng.choice(BIT_DEPTHS)), frames=int(rng.integers(1, 25)),
                   height=height, width=width, threads=THREADS[int(rng.integers(len(THREADS)))],
                   noise=float(rng.choice([0.005, 0.05, 0.2])),
                   with_offsets=bool(rng.random() < 0.5))

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(uint16 frames, coded QP per frame, CTU offsets of the unpadded grid or None)."""
        rng = np.random.default_rng(self.seed + 1_000_003)
        peak = 2**self.bit_depth - 1
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        base = 0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
        drift = np.linspace(0, 0.1, self.frames)[:, None, None]
        noisy = base[None] + drift + rng.normal(0, self.noise, (self.frames, self.height, self.width))
        frames = np.clip(noisy * peak, 0, peak).astype(np.uint16)
        qps = rng.integers(12, 48, self.frames)
        offsets = None
        if self.with_offsets:
            offsets = rng.integers(-6, 7, (self.frames, *ctu_grid_shape(self.height, self.width)))
        return frames, qps, offsets


@dataclass
class StressOutcome:
    case: StressCase
    recon_matches: bool | None  # None: no exact decoder for this stream (see ``verified_by``)
    deterministic: bool | None
    coded_size: tuple[int, int]
    verified_by: str = ""
    first_mismatch: list[int] | None = None  # frame, row, column of the first differing sample
    first_ctu: list[int] | None = None  # frame, CTU row, CTU column
    mismatched_samples: int = 0
    debug_dir: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.recon_matches is not False and self.deterministic is not False


def run_case(case: StressCase, debug_root: str | None = None,
             check_determinism: bool = True) -> StressOutcome:
    """Encode one case (twice when ``check_determinism``) and compare with an independent decode.

    The decoder is the one the backend's own check uses (libde265, else FFmpeg where exact).
    """
    from dmic_core.codecs.x265 import X265Codec  # noqa: PLC0415 - loaded in worker processes

    frames, qps, offsets = case.inputs()
    codec = X265Codec(preset=case.preset, threads=case.threads, verify=False)
    size = codec.coded_frame_size(case.height, case.width)
    padded = pad_frames(frames, size=size)
    padded_offsets = None if offsets is None else pad_ctu_grid(offsets, *size)
    outcome = StressOutcome(case=case, recon_matches=None, deterministic=None, coded_size=size)
    try:
        first = codec.encode(padded, case.bit_depth, qps, padded_offsets)
        decoded, outcome.verified_by = codec.reference_decode(
            first.bitstream, case.bit_depth, qps, padded_offsets)
        if check_determinism:
            again = codec.encode(padded, case.bit_depth, qps, padded_offsets)
            outcome.deterministic = again.bitstream == first.bitstream
    except Exception as exc:  # noqa: BLE001 - a stress run reports every failure, never stops
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    if decoded is None:  # 12-bit, width not a multiple of 16 and a QP >= 50: libde265 aborts,
        return outcome   # FFmpeg mis-decodes (docs/codec.md); counted apart, not a pass
    outcome.recon_matches = decoded.shape == first.recon.shape and np.array_equal(decoded, first.recon)
    if not outcome.recon_matches and decoded.shape == first.recon.shape:
        where = np.argwhere(decoded != first.recon)
        outcome.mismatched_samples = int(len(where))
        outcome.first_mismatch = [int(v) for v in where[0]]
        f, y, x = outcome.first_mismatch
        outcome.first_ctu = [f, y // CTU_SIZE, x // CTU_SIZE]
    outcome.extra["cropped_equal"] = bool(
        decoded.shape == first.recon.shape
        and np.array_equal(crop_frames(decoded, (case.height, case.width)),
                           crop_frames(first.recon, (case.height, case.width))))
    if not outcome.ok and debug_root is not None:
        folder = Path(debug_root) / f"case-{case.seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stream.hevc").write_bytes(first.bitstream)
        np.save(folder / "x265_recon.npy", first.recon)
        np.save(folder / "decoded.npy", decoded)
        np.save(folder / "input.npy", padded)
        outcome.debug_dir = str(folder)
        (folder / "outcome.json").write_text(json.dumps(outcome_dict(outcome), indent=1))
    return outcome


def outcome_dict(outcome: StressOutcome) -> dict[str, Any]:
    return asdict(outcome)


def _run_case_star(args: tuple[StressCase, str | None, bool]) -> StressOutcome:
    return run_case(*args)


def run_stress(seeds: range | list[int], *, workers: int = 2, debug_root: str | None = None,
               check_determinism: bool = True) -> Iterator[StressOutcome]:
    """Run the cases of ``seeds`` in ``workers`` spawned processes; yield outcomes as they end."""
    cases = [(StressCase.draw(s), debug_root, check_determinism) for s in seeds]
    if workers <= 1:
        for args in cases:
            yield _run_case_star(args)
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_run_case_star, cases)
