"""Decode an Annex-B HEVC stream to luma samples, with libde265 or PyAV (FFmpeg).

Shared by every backend so that the reconstruction a codec returns is checked against what an
independent decoder makes of its bitstream. Luma planes are copied as the decoder produced them
(no pixel-format conversion, which would not be bit-exact for some formats).

Known decoder fault (checked in tests/test_codec_x265.py): FFmpeg's HEVC decoder (PyAV 18.1's
and Debian 12's ffmpeg 5.1) mis-decodes 12-bit luma coded at QP >= 50 (QP' = QP + 24 >= 74):
residuals vanish and frames come out flat. x265's reconstruction and libde265 agree bit for bit
there, so ``auto`` prefers libde265 (Debian package ``libde265-examples``) and callers must not
trust PyAV for such streams (:func:`pyav_decodes_exactly`). libde265 1.0.11 in turn aborts on
12-bit streams whose width is not a multiple of 16 (conformance cropping); ``auto`` then falls
back to PyAV.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dmic_core.errors import CodecError, CodecUnavailableError

#: Highest 12-bit luma QP that FFmpeg's HEVC decoder reconstructs correctly.
FFMPEG_MAX_QP_12BIT = 49
#: Names of libde265's command-line decoder (Debian installs it as libde265-dec265).
LIBDE265_NAMES = ("libde265-dec265", "dec265")
DECODERS = ("auto", "libde265", "pyav")


def find_libde265() -> str | None:
    """Path of libde265's ``dec265`` tool, or ``None``."""
    for name in LIBDE265_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def pyav_decodes_exactly(bit_depth: int, max_qp: int) -> bool:
    """Whether FFmpeg decodes a stream of this bit depth whose largest luma QP is ``max_qp``."""
    return bit_depth < 12 or max_qp <= FFMPEG_MAX_QP_12BIT


def _luma(frame: Any, bit_depth: int) -> np.ndarray:
    """The decoder's native luma plane of a PyAV ``VideoFrame`` as uint16 ``(H, W)``."""
    component_bits = frame.format.components[0].bits
    if component_bits != bit_depth:
        raise CodecError(f"stream is {component_bits}-bit ({frame.format.name}), expected "
                         f"{bit_depth}-bit")
    plane = frame.planes[0]
    dtype = np.uint8 if component_bits <= 8 else np.dtype("<u2")
    per_row = plane.line_size // np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype=dtype)[: per_row * frame.height]
    return rows.reshape(frame.height, per_row)[:, : frame.width].astype(np.uint16)


def decode_pyav(bitstream: bytes, bit_depth: int) -> np.ndarray:
    """Decode with FFmpeg through PyAV (see the module note on 12-bit QP >= 50)."""
    import av  # noqa: PLC0415 - imported late so the codecs package loads without PyAV

    ctx = av.CodecContext.create("hevc", "r")
    frames: list[np.ndarray] = []
    try:
        for packet in ctx.parse(bytes(bitstream)) + ctx.parse(None):
            frames.extend(_luma(f, bit_depth) for f in ctx.decode(packet))
        frames.extend(_luma(f, bit_depth) for f in ctx.decode(None))
    except av.FFmpegError as exc:
        raise CodecError(f"HEVC decoding failed: {exc}") from exc
    return _stack(frames)


def decode_libde265(bitstream: bytes, bit_depth: int) -> np.ndarray:
    """Decode with libde265's ``dec265`` tool (luma of its YUV output)."""
    tool = find_libde265()
    if tool is None:
        raise CodecUnavailableError("libde265's decoder (libde265-dec265 / dec265) is not "
                                    "installed; apt-get install libde265-examples")
    with tempfile.TemporaryDirectory(prefix="dmic-de265-") as tmp:
        src, out = Path(tmp) / "in.hevc", Path(tmp) / "out.yuv"
        src.write_bytes(bitstream)
        proc = subprocess.run([tool, "-q", "-t", "0", "-o", str(out), str(src)],
                              capture_output=True, text=True, check=False)
        log = proc.stdout + proc.stderr
        m = re.search(r"nFrames decoded:\s*(\d+)\s*\((\d+)x(\d+)", log)
        if proc.returncode != 0 or m is None or not out.exists():
            raise CodecError(f"libde265 failed (status {proc.returncode}): {log.strip()[-300:]}")
        n, width, height = (int(g) for g in m.groups())
        dtype = np.uint8 if bit_depth <= 8 else np.dtype("<u2")
        data = np.fromfile(out, dtype=dtype)
    luma = width * height
    for chroma in (0, luma // 2, luma, 2 * luma):  # 4:0:0 writes luma only
        if n and data.size == n * (luma + chroma):
            planes = data.reshape(n, luma + chroma)[:, :luma].reshape(n, height, width)
            # one array, no per-frame copies: a view of the file's data when it holds luma only
            return np.ascontiguousarray(planes, dtype=np.uint16)
    raise CodecError(f"libde265 wrote {data.size} samples for {n} frames of {width}x{height}")


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    if not frames:
        raise CodecError("HEVC bitstream decoded to no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise CodecError(f"decoded frames have different sizes: {sorted(shapes)}")
    return np.stack(frames)


def decode_hevc(bitstream: bytes, bit_depth: int, decoder: str = "auto") -> np.ndarray:
    """Decode ``bitstream`` to uint16 ``(frames, height, width)`` luma samples in display order.

    Args:
        decoder: ``libde265``, ``pyav``, or ``auto`` (libde265 when installed, else PyAV).

    Raises:
        CodecError: the stream does not decode, is empty, or has another bit depth.
        CodecUnavailableError: ``libde265`` was asked for and is not installed.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if not bitstream:
        raise CodecError("empty HEVC bitstream")
    if decoder == "libde265":
        return decode_libde265(bitstream, bit_depth)
    if decoder == "auto" and find_libde265() is not None:
        try:
            return decode_libde265(bitstream, bit_depth)
        except CodecError:
            pass  # libde265 1.0.11 aborts on some 12-bit streams (width not a multiple of 16)
    return decode_pyav(bitstream, bit_depth)
