"""The codec interface: frames + frame QPs (+ per-CTU QP offsets) -> bitstream, bits, recon.

Backends are classes behind an ABC and registered by name (as CompressAI's codecs and registry).
Codecs take *coded* QPs; the paper-QP mapping lives in :mod:`dmic_core.codecs.qp`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np


@dataclass
class EncodeResult:
    """What one encode returns.

    Attributes:
        bitstream: the complete Annex-B HEVC stream (parameter sets included).
        bits_per_frame: coded bits of each frame in display order (parameter sets counted in
            frame 0), summing to ``8 * len(bitstream)``.
        recon: decoded samples ``(frames, height, width)``, uint16, bit-exact to decoding
            ``bitstream``.
        frame_qps: the coded QP each frame was forced to (empty under rate control).
        avg_qp: the encoder's reported average QP of each frame.
        encode_seconds / decode_seconds: wall time of the encode and of the decode check.
        codec / params: backend name and the settings that matter for reproducing it.
    """

    bitstream: bytes
    bits_per_frame: np.ndarray
    recon: np.ndarray
    frame_qps: np.ndarray
    avg_qp: np.ndarray
    encode_seconds: float
    decode_seconds: float
    codec: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bits(self) -> int:
        return int(8 * len(self.bitstream))

    @property
    def engine(self) -> dict[str, Any]:
        """The engine that coded this stream and its version (``{"name": "hm", "version": "16.25"}``)."""
        version = self.params.get("version") or self.params.get("x265_version")
        return {"name": self.codec, "version": None if version is None else str(version)}


class Codec(abc.ABC):
    """An HEVC engine that codes monochrome frames as a low-delay-P video."""

    name: ClassVar[str]
    description: ClassVar[str]

    def coded_frame_size(self, height: int, width: int) -> tuple[int, int]:
        """Smallest frame size ``>= (height, width)`` that this engine codes correctly.

        Every HEVC engine here needs multiples of 8 (the minimum CU); a backend with further
        rules (x265's minimum of one CTU, its one-CTU-wide fault) overrides this. Callers pad
        to this size by edge replication and crop the reconstruction back.
        """
        return (-(-height // 8) * 8, -(-width // 8) * 8)

    @classmethod
    @abc.abstractmethod
    def availability(cls) -> str | None:
        """``None`` when the backend can run here, else a one-line reason it cannot."""

    @classmethod
    def available(cls) -> bool:
        return cls.availability() is None

    @abc.abstractmethod
    def encode(self, frames: np.ndarray, bit_depth: int, frame_qps: np.ndarray | None,
               ctu_offsets: np.ndarray | None = None, *, bitrate_kbps: float | None = None,
               progress: Callable[[int, int], None] | None = None) -> EncodeResult:
        """Encode ``frames`` (uint16 ``(F, H, W)``, H and W multiples of 8, values < 2**bit_depth).

        Args:
            frame_qps: coded QP per frame (forced), or ``None`` for rate control at
                ``bitrate_kbps`` (25 frames per second nominal).
            ctu_offsets: integer QP offset per 64x64 CTU, shape ``(F, ceil(H/64), ceil(W/64))``.
            progress: called with (frames done, frames total).
        """

    @abc.abstractmethod
    def decode(self, bitstream: bytes, bit_depth: int) -> np.ndarray:
        """Decode a stream of this codec to uint16 ``(F, H, W)`` samples."""


CODECS: dict[str, type[Codec]] = {}


def register_codec(name: str) -> Callable[[type[Codec]], type[Codec]]:
    """Class decorator that registers a backend under ``name``."""

    def decorator(cls: type[Codec]) -> type[Codec]:
        cls.name = name
        CODECS[name] = cls
        return cls

    return decorator
