"""libx265 backend: exact forced frame QPs and per-CTU QP offsets through a small C extension.

x265's command-line tool cannot take per-block QPs, and FFmpeg/PyAV cannot force frame QPs, so
the encoder is driven through the library API (``dmic_core.codecs._x265``). The settings that make
offsets exact (CRF mode with forced QPs, aq-mode 1 at a negligible strength, cutree off, 64x64
quantisation groups) are fixed in the extension; see docs/codec.md.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from dmic_core.codecs.base import Codec, EncodeResult, register_codec
from dmic_core.codecs.decode import (FFMPEG_MAX_QP_12BIT, decode_hevc, find_libde265,
                                     pyav_decodes_exactly)
from dmic_core.codecs.qp import CODEC_QP_MAX, CODEC_QP_MIN, CTU_SIZE, ctu_grid_shape
from dmic_core.errors import CodecError, CodecUnavailableError

#: x265 API builds this backend was tested with (Debian 12's libx265-199).
SUPPORTED_X265_BUILDS = (199,)

#: Bit depths DMIC codes at; CT volumes need 12 bits, so all three must be present.
BIT_DEPTHS = (8, 10, 12)

#: Default preset, chosen with bench/bench_codec.py on real CT (docs/codec.md): the only fast
#: preset within +10% BD-rate of HM (+5-6% against veryslow; medium is +15%), at 2-7 CPU-s
#: per 33 frames of 512x512.
DEFAULT_PRESET = "slow"

#: x265 quantisation-offset block size (``quantOffsets`` has one float per 16x16 block).
OFFSET_BLOCK = 16

_NOMINAL_FPS = 25.0

#: Narrowest picture x265 codes correctly. x265 refuses pictures smaller than one CTU (64), and
#: libx265 3.5 (build 199) mis-reconstructs pictures exactly one CTU wide: its reconstruction
#: then differs from what the stream decodes to (libde265 and FFmpeg agree with each other),
#: from the right picture edge, differently from run to run. Measured (docs/codec.md, 16-frame
#: encodes of 12 inputs per size): width 64 mismatched in 28 of 36, widths 72-200 in 0 of 84;
#: bench/stress_x265_recon.py reproduces it. One more CTU column, even a partial one, avoids it; 16 more samples rather
#: than 8 because libde265 1.0.11 aborts on 10/12-bit streams whose width is not a multiple of 16.
MIN_WIDTH = CTU_SIZE + 16
#: Lowest picture x265 accepts ("Picture size must be at least one CTU").
MIN_HEIGHT = CTU_SIZE


def _load_extension() -> Any:
    from dmic_core.codecs import _x265  # noqa: PLC0415 - optional compiled module

    return _x265


def x265_info() -> dict[str, Any]:
    """Version and build of the linked libx265 (raises CodecUnavailableError if unusable)."""
    reason = X265Codec.availability()
    if reason is not None:
        raise CodecUnavailableError(reason)
    return _load_extension().info(0)


def expand_ctu_offsets(ctu_offsets: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-16x16-block float32 offsets ``(F, ceil(H/16), ceil(W/16))`` from per-CTU offsets.

    Every block of a CTU gets the CTU's offset, so x265's average over the 64x64 quantisation
    group is exactly that offset (border CTUs are partial and keep only their own blocks).
    """
    per_ctu = CTU_SIZE // OFFSET_BLOCK
    blocks = np.repeat(np.repeat(ctu_offsets, per_ctu, axis=1), per_ctu, axis=2)
    rows, cols = -(-height // OFFSET_BLOCK), -(-width // OFFSET_BLOCK)
    return np.ascontiguousarray(blocks[:, :rows, :cols], dtype=np.float32)


def validate_encode_inputs(frames: np.ndarray, bit_depth: int, frame_qps: np.ndarray | None,
                           ctu_offsets: np.ndarray | None,
                           bitrate_kbps: float | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check the arguments of :meth:`Codec.encode`; return (frame QPs, CTU offsets) as int arrays.

    Shared by the backends so that bad input fails the same way, with a ValueError that says
    what was expected, before any encoder runs.
    """
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit depth must be one of {BIT_DEPTHS}, got {bit_depth}")
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint16:
        raise ValueError(f"frames must be a uint16 numpy array, got "
                         f"{getattr(frames, 'dtype', type(frames).__name__)}")
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (frames, height, width), got {frames.shape}")
    n, height, width = frames.shape
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise ValueError(f"frame height and width must be positive multiples of 8, got "
                         f"{height}x{width}")
    if int(frames.max()) >= 2**bit_depth:
        raise ValueError(f"sample value {int(frames.max())} does not fit {bit_depth} bits")
    qps = None
    if frame_qps is None:
        if bitrate_kbps is None or not np.isfinite(bitrate_kbps) or bitrate_kbps <= 0:
            raise ValueError("without frame QPs a positive bitrate_kbps is needed (rate control)")
    else:
        raw = np.asarray(frame_qps)
        if raw.shape != (n,):
            raise ValueError(f"need one QP per frame: got shape {raw.shape} for {n} frames")
        if not np.issubdtype(raw.dtype, np.number) or np.any(raw != np.round(raw)):
            raise ValueError("frame QPs must be integers")
        qps = raw.astype(np.int64)
        if qps.min() < CODEC_QP_MIN or qps.max() > CODEC_QP_MAX:
            raise ValueError(f"frame QPs must lie in {CODEC_QP_MIN}..{CODEC_QP_MAX}, got "
                             f"{int(qps.min())}..{int(qps.max())}")
    offsets = None
    if ctu_offsets is not None:
        raw = np.asarray(ctu_offsets)
        expected = (n, *ctu_grid_shape(height, width))
        if raw.shape != expected:
            raise ValueError(f"CTU offsets must have shape {expected} (frames, ceil(H/64), "
                             f"ceil(W/64)), got {raw.shape}")
        if not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"CTU offsets must be integers, got dtype {raw.dtype}")
        offsets = raw.astype(np.int64)
        if np.abs(offsets).max(initial=0) > CODEC_QP_MAX:
            raise ValueError(f"CTU offsets must lie in -{CODEC_QP_MAX}..{CODEC_QP_MAX}")
    return qps, offsets


@register_codec("x265")
class X265Codec(Codec):
    """HEVC through libx265 (build 199): forced QP per frame, QP offset per 64x64 CTU.

    Args:
        preset: x265 speed preset (``ultrafast`` .. ``placebo``); see ``DEFAULT_PRESET``.
        threads: worker threads of x265's pool (``pools``); ``None`` lets x265 use every core.
            Frame threading is always 1 so output is reproducible.
        extra_params: further x265 options (``{"rdoq-level": 2}``), applied after DMIC's fixed
            settings; they may break the exact-QP guarantees, which the encoder's read-back
            checks only in part.
        verify: decode the stream with an independent decoder (libde265, else FFmpeg where
            FFmpeg is exact) and require it to equal x265's reconstruction, which ``recon`` is.
    """

    description = "libx265 via the dmic_core.codecs._x265 extension (per-CTU QP offsets)"

    def __init__(self, preset: str = DEFAULT_PRESET, threads: int | None = None,
                 extra_params: Mapping[str, Any] | None = None, verify: bool = True) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.preset = preset
        self.threads = threads
        self.extra_params = dict(extra_params or {})
        self.verify = verify

    @classmethod
    def availability(cls) -> str | None:
        try:
            ext = _load_extension()
        except ImportError as exc:
            return f"the x265 extension dmic_core.codecs._x265 is not built ({exc}); run pip install -e ."
        for depth in BIT_DEPTHS:
            try:
                info = ext.info(depth)
            except RuntimeError as exc:
                return f"libx265 cannot encode at {depth} bits: {exc}"
            if info["build"] not in SUPPORTED_X265_BUILDS:
                return (f"libx265 build {info['build']} ({info['version']}) found; DMIC supports "
                        f"build(s) {', '.join(map(str, SUPPORTED_X265_BUILDS))}")
        return None

    def coded_frame_size(self, height: int, width: int) -> tuple[int, int]:
        h, w = super().coded_frame_size(height, width)
        return max(h, MIN_HEIGHT), max(w, MIN_WIDTH)

    def param_list(self) -> list[tuple[str, str]]:
        """The x265 options this instance adds to the fixed DMIC settings, as strings."""
        params: list[tuple[str, str]] = []
        if self.threads is not None:
            params.append(("pools", str(self.threads)))
        for key, value in self.extra_params.items():
            if isinstance(value, bool):
                value = int(value)
            params.append((str(key), str(value)))
        return params

    def encode(self, frames: np.ndarray, bit_depth: int, frame_qps: np.ndarray | None,
               ctu_offsets: np.ndarray | None = None, *, bitrate_kbps: float | None = None,
               progress: Callable[[int, int], None] | None = None) -> EncodeResult:
        qps, offsets = validate_encode_inputs(frames, bit_depth, frame_qps, ctu_offsets,
                                              bitrate_kbps)
        reason = self.availability()
        if reason is not None:
            raise CodecUnavailableError(reason)
        n, height, width = frames.shape
        if (height, width) != self.coded_frame_size(height, width):
            need_h, need_w = self.coded_frame_size(height, width)
            raise ValueError(f"x265 cannot code {height}x{width} frames correctly (at least "
                             f"{MIN_HEIGHT} high and {MIN_WIDTH} wide): pad them to "
                             f"{need_h}x{need_w} with dmic_core.transforms.hu.pad_frames(frames, "
                             f"size=codec.coded_frame_size(h, w)) and crop the reconstruction")
        samples = frames.astype(np.uint8) if bit_depth == 8 else frames.astype("<u2", copy=False)
        blocks = None if offsets is None else expand_ctu_offsets(offsets, height, width)
        params = self.param_list()
        start = time.perf_counter()
        try:
            out = _load_extension().encode(
                bit_depth, width, height, n, np.ascontiguousarray(samples).tobytes(),
                None if qps is None else [int(q) for q in qps],
                None if blocks is None else blocks.tobytes(), self.preset, params,
                float(bitrate_kbps or 0.0), progress)
        except RuntimeError as exc:
            raise CodecError(f"x265: {exc}") from exc
        encode_seconds = time.perf_counter() - start

        headers: bytes = out["headers"]
        bitstream = headers + b"".join(out["frames"])
        bits = np.array([8 * len(f) for f in out["frames"]], dtype=np.int64)
        bits[0] += 8 * len(headers)
        recon = None
        if out["recon"] is not None:
            recon = np.frombuffer(out["recon"], dtype=samples.dtype).reshape(frames.shape)
            recon = recon.astype(np.uint16, copy=False)  # read-only view unless 8-bit
        check, decode_seconds = "not checked", 0.0
        if recon is None or self.verify:
            start = time.perf_counter()
            decoded, check = self.reference_decode(bitstream, bit_depth, qps, offsets)
            decode_seconds = time.perf_counter() - start
            if decoded is None and recon is None:
                raise CodecError(f"x265 returned no reconstruction and the stream was {check}")
            if decoded is not None:
                if decoded.shape != frames.shape:
                    raise CodecError(f"decoded {decoded.shape}, encoded {frames.shape}")
                if recon is not None and not np.array_equal(decoded, recon):
                    raise CodecError(f"x265's reconstruction differs from the stream "
                                     f"{check.replace('bit-exact with', 'decoded by')}")
                recon = decoded
        return EncodeResult(
            bitstream=bitstream,
            bits_per_frame=bits,
            recon=recon,
            frame_qps=np.zeros(0, np.int32) if qps is None else qps.astype(np.int32),
            avg_qp=np.asarray(out["avg_qp"], dtype=np.float64),
            encode_seconds=encode_seconds,
            decode_seconds=decode_seconds,
            codec=self.name,
            params={
                "preset": self.preset,
                "x265_version": out["version"],
                "x265_params": params,
                "threads": self.threads,
                "bit_depth": bit_depth,
                "bitrate_kbps": None if qps is not None else float(bitrate_kbps or 0.0),
                "nominal_fps": _NOMINAL_FPS,
                "slice_types": "".join(out["slice_types"]),
                "readback": out["readback"],
                "recon_check": check,
            },
        )

    @staticmethod
    def reference_decode(bitstream: bytes, bit_depth: int, qps: np.ndarray | None,
                         offsets: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        """Decode with the first decoder that is exact for this stream: libde265, then PyAV.

        PyAV is skipped for 12-bit streams with a CTU at QP >= 50 (FFmpeg mis-decodes them);
        libde265 is skipped when missing or when it aborts. Returns (samples or None, what ran).
        """
        if find_libde265() is not None:
            try:
                return decode_hevc(bitstream, bit_depth, "libde265"), "bit-exact with libde265"
            except CodecError:
                pass
        if qps is None:
            max_qp = CODEC_QP_MAX  # rate control may pick any QP
        else:
            qp_map = qps[:, None, None] + (0 if offsets is None else offsets)
            max_qp = int(np.clip(qp_map, CODEC_QP_MIN, CODEC_QP_MAX).max())
        if pyav_decodes_exactly(bit_depth, max_qp):
            return decode_hevc(bitstream, bit_depth, "pyav"), "bit-exact with pyav"
        return None, (f"not checked: libde265 unavailable and FFmpeg mis-decodes 12-bit QP >= "
                      f"{FFMPEG_MAX_QP_12BIT + 1}")

    def decode(self, bitstream: bytes, bit_depth: int) -> np.ndarray:
        """Decode with libde265 when installed, else PyAV (see dmic_core.codecs.decode)."""
        return decode_hevc(bitstream, bit_depth)
