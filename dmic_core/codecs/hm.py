"""HM (HEVC reference encoder) backend: the quality anchor, driven as an external binary.

Nothing of HM is committed: ``bash scripts/setup.sh --with-hm HM-16.25.tar.gz`` builds HM 16.25
with the project's patch (hm_bin/patches/) into ``<repo>/hm_bin/``; ``$DMIC_HM_DIR`` may name
another folder (see hm_bin/README.md). The coding structure is written by us with the values of
HM's ``encoder_lowdelay_P_main.cfg``. Frame QPs are forced either by running the plain anchor
(``--QP base``) when they equal HM's LDP pattern, or with a flat GOP and ``--dQPFile``. Per-CTU
maps need the patched encoder (:data:`CTU_MAP_OPTION` in ``--help``); the patched decoder's
:data:`CTU_TRACE_OPTION` reports the QP every CTU carries in the stream. The stream is decoded
with libde265 or FFmpeg (PyAV) and checked against HM's own reconstruction.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dmic_core.codecs.base import Codec, EncodeResult, register_codec
from dmic_core.codecs.decode import decode_hevc
from dmic_core.codecs.qp import (
    CODEC_QP_MAX,
    CODEC_QP_MIN,
    GOP_SIZE,
    ctu_grid_shape,
    hm_anchor_frame_qps,
)
from dmic_core.codecs.x265 import validate_encode_inputs
from dmic_core.defaults import repo_relative
from dmic_core.errors import CodecError, CodecUnavailableError

#: Environment variable naming a folder with the HM binaries (searched before hm_bin/).
HM_DIR_ENV = "DMIC_HM_DIR"
#: Folder of the repository searched for HM binaries when the variable is unset or lacks them.
REPO_HM_DIR = Path(__file__).resolve().parents[2] / "hm_bin"
ENCODER_NAMES = ("TAppEncoder", "TAppEncoderStatic")
DECODER_NAMES = ("TAppDecoder", "TAppDecoderStatic")
#: Option a CTU-map-capable HM must list in ``--help``: a text file with one line per frame
#: (POC order) holding that frame's integer CTU QP offsets in raster order, space-separated.
CTU_MAP_OPTION = "CtuQpOffsetFile"
#: Option of the patched decoder that writes one line per decoded CTU: "POC CtuRsAddr QP dQPCoded".
CTU_TRACE_OPTION = "CtuQpTraceFile"
#: How HM gets into hm_bin/ (said wherever HM is missing).
BUILD_HINT = ("build it with `bash scripts/setup.sh --with-hm PATH/TO/HM-16.25.tar.gz` "
              "(2-5 minutes once; see hm_bin/README.md)")
_VERSION_LINE = re.compile(r"HM software:\s*Encoder Version \[([^\]]+)\]")

#: GOP of encoder_lowdelay_P_main.cfg: (POC, QPoffset, QPOffsetModelOff, QPOffsetModelScale,
#: reference POC deltas). Four references: the previous picture and the last three GOP ends.
_LDP_GOP = tuple(
    (poc, qpo, off, scale, (-1, -poc, -poc - 8, -poc - 16) if poc > 1 else (-1, -9, -17, -25))
    for poc, qpo, off, scale in [(1, 5, -6.5, 0.2590), (2, 4, -6.5, 0.2590), (3, 5, -6.5, 0.2590),
                                 (4, 4, -6.5, 0.2590), (5, 5, -6.5, 0.2590), (6, 4, -6.5, 0.2590),
                                 (7, 5, -6.5, 0.2590), (8, 1, 0.0, 0.0)]
)
_LDP_INTRA_QP_OFFSET = -1

#: Settings of encoder_lowdelay_P_main.cfg other than the GOP (written by us, values as HM's).
_LDP_SETTINGS = {
    "MaxCUWidth": 64, "MaxCUHeight": 64, "MaxPartitionDepth": 4,
    "QuadtreeTULog2MaxSize": 5, "QuadtreeTULog2MinSize": 2,
    "QuadtreeTUMaxDepthInter": 3, "QuadtreeTUMaxDepthIntra": 3,
    "IntraPeriod": -1, "DecodingRefreshType": 0, "GOPSize": GOP_SIZE, "LambdaFromQpEnable": 1,
    "FastSearch": 1, "SearchRange": 64, "BipredSearchRange": 4, "HadamardME": 1, "FEN": 1,
    "FDM": 1, "MaxDeltaQP": 0, "MaxCuDQPDepth": 0, "DeltaQpRD": 0, "RDOQ": 1, "RDOQTS": 1,
    "LoopFilterOffsetInPPS": 1, "LoopFilterDisable": 0, "LoopFilterBetaOffset_div2": 0,
    "LoopFilterTcOffset_div2": 0, "DeblockingFilterMetric": 0, "SAO": 1, "AMP": 1,
    "TransformSkip": 1, "TransformSkipFast": 1, "SAOLcuBoundary": 0, "SliceMode": 0,
    "LFCrossSliceBoundaryFlag": 1, "PCMEnabledFlag": 0, "WaveFrontSynchro": 0, "ScalingList": 0,
    "TransquantBypassEnable": 0, "RateControl": 0,
}

#: Settings of newer HM releases (16.22+) written only when ``--help`` lists them: the GOP-based
#: temporal pre-filter of the LDP configuration (every 8th frame).
_OPTIONAL_SETTINGS = {"TemporalFilter": 1, "TemporalFilterFutureReference": 0}

_POC_LINE = re.compile(
    r"^POC\s+(\d+)\s+TId:\s*\d+\s+\(\s*([A-Z])-SLICE,\s*nQP\s+(-?\d+)\s+QP\s+(-?\d+)\s*\)\s+(\d+)\s+bits")


@dataclass(frozen=True)
class HMBinaries:
    """Where the HM binaries are (``None`` for a missing one) and the folders searched."""

    encoder: Path | None
    decoder: Path | None
    searched: tuple[Path, ...]


def find_hm_binaries() -> HMBinaries:
    """Look for the HM encoder and decoder in ``$DMIC_HM_DIR`` then ``<repo>/hm_bin/``."""
    dirs = [Path(os.environ[HM_DIR_ENV]).expanduser()] if os.environ.get(HM_DIR_ENV) else []
    dirs.append(REPO_HM_DIR)

    def first(names: tuple[str, ...]) -> Path | None:
        for folder in dirs:
            for name in names:
                path = folder / name
                if path.is_file() and os.access(path, os.X_OK):
                    return path
        return None

    return HMBinaries(first(ENCODER_NAMES), first(DECODER_NAMES), tuple(dirs))


@functools.lru_cache(maxsize=8)
def _help_text(encoder: Path, mtime: float) -> str:
    """The encoder's ``--help`` output (cached per binary and modification time)."""
    try:
        proc = subprocess.run([str(encoder), "--help"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodecUnavailableError(f"cannot run {encoder} --help: {exc}") from exc
    return proc.stdout + proc.stderr


def encoder_help(encoder: Path) -> str:
    """``--help`` text of an HM encoder binary."""
    return _help_text(encoder, encoder.stat().st_mtime)


def hm_version(log: str) -> str | None:
    """HM's version from an encoder log ("16.25"), or ``None``."""
    m = _VERSION_LINE.search(log)
    return m.group(1).strip() if m else None


def clip_ctu_offsets(frame_qps: np.ndarray, ctu_offsets: np.ndarray) -> np.ndarray:
    """Offsets such that every CTU's QP, frame QP + offset, lies in the codec's 0..51 (as x265)."""
    qps = np.asarray(frame_qps, dtype=np.int64)[:, None, None]
    return np.clip(qps + ctu_offsets, CODEC_QP_MIN, CODEC_QP_MAX) - qps


def read_ctu_qp_trace(path: Path, n_frames: int, rows: int, cols: int) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """Parse the patched decoder's CTU trace into (QP, dQP coded) arrays ``(frames, rows, cols)``.

    Every CTU of every frame must appear exactly once; a CTU without ``cu_qp_delta`` (no
    residual) carries the predicted QP, which HEVC uses for it (deblocking included).
    """
    qp = np.full((n_frames, rows * cols), -999, dtype=np.int32)
    coded = np.zeros((n_frames, rows * cols), dtype=bool)
    seen = np.zeros((n_frames, rows * cols), dtype=np.int32)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) != 4:
            raise CodecError(f"unexpected line in HM's CTU QP trace: {line!r}")
        poc, addr, value, flag = map(int, fields)
        if not (0 <= poc < n_frames and 0 <= addr < rows * cols):
            raise CodecError(f"HM's CTU QP trace names POC {poc} CTU {addr} outside "
                             f"{n_frames} frames of {rows}x{cols} CTUs")
        qp[poc, addr], coded[poc, addr] = value, bool(flag)
        seen[poc, addr] += 1
    if not np.all(seen == 1):
        raise CodecError(f"HM's CTU QP trace covers {int((seen == 1).sum())} of {seen.size} CTUs "
                         f"exactly once")
    return qp.reshape(n_frames, rows, cols), coded.reshape(n_frames, rows, cols)


def decode_ctu_qps(bitstream: bytes, n_frames: int, height: int, width: int,
                   decoder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """QP of every CTU as coded in ``bitstream``, read by the patched HM decoder.

    Returns (QP, dQP coded), each ``(frames, ceil(H/64), ceil(W/64))``. Raises
    CodecUnavailableError when no decoder with :data:`CTU_TRACE_OPTION` is installed.
    """
    decoder = decoder or find_hm_binaries().decoder
    if decoder is None:
        raise CodecUnavailableError(f"HM decoder ({' / '.join(DECODER_NAMES)}) not found; "
                                    f"{BUILD_HINT}")
    if CTU_TRACE_OPTION not in encoder_help(decoder):
        raise CodecUnavailableError(f"{decoder} has no --{CTU_TRACE_OPTION} option (unpatched "
                                    f"HM); {BUILD_HINT}")
    rows, cols = ctu_grid_shape(height, width)
    with tempfile.TemporaryDirectory(prefix="dmic-hmdec-") as tmp:
        work = Path(tmp)
        (work / "in.bin").write_bytes(bitstream)
        proc = subprocess.run([str(decoder), "-b", str(work / "in.bin"),
                               f"--{CTU_TRACE_OPTION}={work / 'ctu.txt'}"],
                              capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
            raise CodecError(f"HM decoder exited with status {proc.returncode}:\n{tail}")
        return read_ctu_qp_trace(work / "ctu.txt", n_frames, rows, cols)


def anchor_base_qp(frame_qps: np.ndarray) -> int | None:
    """The ``--QP`` base whose HM LDP pattern equals ``frame_qps``, or ``None``.

    The anchor's I frame is coded at base - 1, so the only candidate is ``frame_qps[0] + 1``.
    """
    qps = np.asarray(frame_qps)
    base = int(qps[0]) - _LDP_INTRA_QP_OFFSET
    if np.array_equal(hm_anchor_frame_qps(base, len(qps)), qps):
        return base
    return None


def write_cfg(path: Path, anchor: bool, extra: dict[str, object]) -> None:
    """Write our LDP configuration: HM's GOP (``anchor``) or a flat-QP GOP for --dQPFile."""
    lines = ["# DMIC Studio: values of HM's encoder_lowdelay_P_main.cfg (written by dmic_core)"]
    settings = dict(_LDP_SETTINGS)
    settings["IntraQPOffset"] = _LDP_INTRA_QP_OFFSET if anchor else 0
    settings.update(extra)
    lines += [f"{key:<30}: {value}" for key, value in settings.items()]
    lines.append("#        Type POC QPoffset QPOffsetModelOff QPOffsetModelScale CbQPoffset "
                 "CrQPoffset QPfactor tcOffsetDiv2 betaOffsetDiv2 temporal_id #ref_pics_active "
                 "#ref_pics reference-pictures predict")
    for poc, qpo, off, scale, refs in _LDP_GOP:
        if not anchor:
            qpo, off, scale = 0, 0.0, 0.0
        qpfactor = 1.0
        lines.append(f"Frame{poc}:  P {poc} {qpo} {off} {scale} 0 0 {qpfactor} 0 0 0 "
                     f"{len(refs)} {len(refs)} {' '.join(map(str, refs))} 0")
    path.write_text("\n".join(lines) + "\n")


def split_access_units(bitstream: bytes) -> list[bytes]:
    """Split an Annex-B HEVC stream into access units (bytes of each coded picture).

    Parameter sets, AUDs and prefix SEIs open a new access unit, as does a slice that starts a
    picture; everything before the first picture's slices (VPS/SPS/PPS) is counted with it.
    The pieces concatenate to the whole stream.
    """
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", bitstream)]
    units: list[bytes] = []
    current_start, has_vcl = 0, False
    for sc in starts:
        if sc + 3 >= len(bitstream):
            continue
        nal_type = (bitstream[sc + 3] >> 1) & 0x3F
        begin = sc - 1 if sc > 0 and bitstream[sc - 1] == 0 else sc
        is_vcl = nal_type < 32
        first_slice = is_vcl and sc + 5 < len(bitstream) and bool(bitstream[sc + 5] & 0x80)
        opens = first_slice or nal_type in (32, 33, 34, 35, 39) or 41 <= nal_type <= 44 \
            or 48 <= nal_type <= 55
        if opens and has_vcl:
            units.append(bitstream[current_start:begin])
            current_start, has_vcl = begin, False
        has_vcl = has_vcl or is_vcl
    units.append(bitstream[current_start:])
    return units


def parse_hm_log(text: str) -> list[tuple[int, str, int, int]]:
    """Per-frame (POC, slice type, QP, bits) from HM's encoder log, sorted by POC."""
    rows = []
    for line in text.splitlines():
        m = _POC_LINE.match(line.strip())
        if m:
            rows.append((int(m.group(1)), m.group(2), int(m.group(4)), int(m.group(5))))
    return sorted(rows)


def write_hm_job(work: Path, frames: np.ndarray, bit_depth: int, qps: np.ndarray,
                 offsets: np.ndarray | None, help_text: str,
                 extra_cfg: dict[str, object] | None = None) -> dict[str, object]:
    """Write one HM encode's inputs into ``work`` (raw YUV, configuration, dQP and CTU files).

    Returns the encoder arguments (``args``, without the program; paths inside ``work``), whether
    it runs as the anchor, its ``--QP`` base, the optional settings written and the profile.
    ``offsets`` must already be clipped (:func:`clip_ctu_offsets`).
    """
    n, height, width = frames.shape
    base = anchor_base_qp(qps)
    anchor = base is not None
    if base is None:
        base = int(qps[0])
    extra = {k: v for k, v in _OPTIONAL_SETTINGS.items() if k in help_text}
    extra.update(extra_cfg or {})
    profile = "monochrome" if bit_depth == 8 else "monochrome12"
    frames.astype(np.uint8 if bit_depth == 8 else "<u2").tofile(work / "in.yuv")
    write_cfg(work / "ldp.cfg", anchor, extra)
    args = ["-c", str(work / "ldp.cfg"), "-i", str(work / "in.yuv"),
            "-b", str(work / "out.bin"), "-o", str(work / "rec.yuv"),
            "-wdt", str(width), "-hgt", str(height), "-fr", "25", "-f", str(n),
            f"--InputBitDepth={bit_depth}", f"--InternalBitDepth={bit_depth}",
            f"--OutputBitDepth={bit_depth}", "--InputChromaFormat=400",
            "--ChromaFormatIDC=400", f"--Profile={profile}", f"--QP={base}"]
    if not anchor:
        (work / "dqp.txt").write_text("\n".join(str(int(q) - base) for q in qps) + "\n")
        args.append(f"--dQPFile={work / 'dqp.txt'}")
    if offsets is not None:
        (work / "ctu.txt").write_text("".join(
            " ".join(str(int(v)) for v in frame.ravel()) + "\n" for frame in offsets))
        args.append(f"--{CTU_MAP_OPTION}={work / 'ctu.txt'}")
    return {"args": args, "anchor": anchor, "base_qp": base, "extra": extra, "profile": profile}


@register_codec("hm")
class HMCodec(Codec):
    """HEVC through the HM reference encoder (``TAppEncoder``) with the LDP main configuration.

    Args:
        extra_cfg: further HM settings written to the configuration file (``{"SAO": 0}``).
        timeout_s: give up on one encode after this many seconds (``None``: no limit).
    """

    description = "HM reference encoder (TAppEncoder, low-delay P main configuration)"

    def __init__(self, extra_cfg: dict[str, object] | None = None,
                 timeout_s: float | None = None) -> None:
        self.extra_cfg = dict(extra_cfg or {})
        self.timeout_s = timeout_s

    @classmethod
    def availability(cls) -> str | None:
        found = find_hm_binaries()
        if found.encoder is None:
            where = " or ".join(repo_relative(d) for d in found.searched)
            return (f"HM encoder ({' / '.join(ENCODER_NAMES)}) not found in {where}; "
                    f"{BUILD_HINT}")
        return None

    @classmethod
    def supports_ctu_map(cls) -> bool:
        """Whether the HM found here lists :data:`CTU_MAP_OPTION` in its ``--help``."""
        encoder = find_hm_binaries().encoder
        return encoder is not None and CTU_MAP_OPTION in encoder_help(encoder)

    def encode(self, frames: np.ndarray, bit_depth: int, frame_qps: np.ndarray | None,
               ctu_offsets: np.ndarray | None = None, *, bitrate_kbps: float | None = None,
               progress: Callable[[int, int], None] | None = None) -> EncodeResult:
        qps, offsets = validate_encode_inputs(frames, bit_depth, frame_qps, ctu_offsets,
                                              bitrate_kbps)
        encoder = find_hm_binaries().encoder
        if encoder is None:
            raise CodecUnavailableError(self.availability() or "HM encoder not found")
        if qps is None:
            raise CodecUnavailableError("the HM backend codes forced frame QPs only (no rate "
                                        "control); use the x265 backend for a rate-controlled "
                                        "baseline")
        help_text = encoder_help(encoder)
        if offsets is not None and CTU_MAP_OPTION not in help_text:
            raise CodecUnavailableError(
                f"{encoder} has no --{CTU_MAP_OPTION} option, so it cannot code per-CTU QP "
                f"offsets (unmodified HM); {BUILD_HINT}")
        if offsets is not None:
            offsets = clip_ctu_offsets(qps, offsets)
        n, height, width = frames.shape
        with tempfile.TemporaryDirectory(prefix="dmic-hm-") as tmp:
            work = Path(tmp)
            job = write_hm_job(work, frames, bit_depth, qps, offsets, help_text, self.extra_cfg)
            anchor, base, extra, profile = job["anchor"], job["base_qp"], job["extra"], job["profile"]
            argv = [str(encoder), *job["args"]]
            start = time.perf_counter()
            log = self._run(argv, n, progress)
            encode_seconds = time.perf_counter() - start
            bitstream = (work / "out.bin").read_bytes()
            hm_recon = self._read_recon(work / "rec.yuv", frames.shape, bit_depth)
        rows = parse_hm_log(log)
        if [r[0] for r in rows] != list(range(n)):
            raise CodecError(f"HM log lists POCs {[r[0] for r in rows]}, expected 0..{n - 1}")
        slice_qps = np.array([r[2] for r in rows], dtype=np.float64)
        if not np.array_equal(slice_qps, qps):
            raise CodecError(f"HM coded QPs {slice_qps.astype(int).tolist()}, asked for "
                             f"{qps.tolist()}")
        units = split_access_units(bitstream)
        if len(units) != n:
            raise CodecError(f"HM stream has {len(units)} access units for {n} frames")
        bits = np.array([8 * len(u) for u in units], dtype=np.int64)
        start = time.perf_counter()
        recon = decode_hevc(bitstream, bit_depth)
        decode_seconds = time.perf_counter() - start
        if hm_recon is not None and not np.array_equal(recon, hm_recon):
            raise CodecError("HM's reconstruction differs from the decoded bitstream")
        avg_qp = slice_qps
        ctu_qp_source = "slice"
        if offsets is not None:
            # HM logs slice QPs only. The patched decoder reports the QP each CTU carries in the
            # stream (what x265 reports as its average); without it, the requested CTU average.
            absolute = qps[:, None, None] + offsets
            avg_qp = absolute.reshape(n, -1).mean(axis=1)
            ctu_qp_source = "requested"
            decoder = find_hm_binaries().decoder
            if decoder is not None and CTU_TRACE_OPTION in encoder_help(decoder):
                coded_qps, _ = decode_ctu_qps(bitstream, n, height, width, decoder)
                avg_qp = coded_qps.reshape(n, -1).mean(axis=1).astype(np.float64)
                ctu_qp_source = "stream"
        return EncodeResult(
            bitstream=bitstream, bits_per_frame=bits, recon=recon,
            frame_qps=qps.astype(np.int32), avg_qp=avg_qp, encode_seconds=encode_seconds,
            decode_seconds=decode_seconds, codec=self.name,
            params={"encoder": repo_relative(encoder), "version": hm_version(log),
                    "mode": "anchor" if anchor else "dQPFile", "avg_qp_from": ctu_qp_source,
                    "base_qp": base, "profile": profile, "bit_depth": bit_depth,
                    "extra_cfg": extra, "argv": argv[1:], "hm_bits": [r[3] for r in rows],
                    "slice_types": "".join(r[1] for r in rows)},
        )

    def _run(self, argv: list[str], n: int, progress: Callable[[int, int], None] | None) -> str:
        """Run HM, reporting progress per logged frame; return its log or raise CodecError."""
        lines: list[str] = []
        done = 0
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace") as proc:
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.append(line)
                    if progress is not None and _POC_LINE.match(line.strip()):
                        done += 1
                        progress(done, n)
                    if deadline is not None and time.monotonic() > deadline:
                        raise CodecError(f"HM took more than {self.timeout_s} s")
                proc.wait(timeout=None if deadline is None
                          else max(1.0, deadline - time.monotonic()))
            except BaseException:
                proc.kill()
                raise
        log = "".join(lines)
        if proc.returncode != 0:
            tail = "\n".join(log.splitlines()[-15:])
            raise CodecError(f"HM exited with status {proc.returncode}:\n{tail}")
        return log

    @staticmethod
    def _read_recon(path: Path, shape: tuple[int, ...], bit_depth: int) -> np.ndarray | None:
        """HM's reconstruction file (luma only, or luma of 4:2:0), or ``None`` if absent."""
        if not path.exists():
            return None
        n, height, width = shape
        dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")
        data = np.fromfile(path, dtype=dtype)
        luma = height * width
        for chroma in (0, luma // 2):
            if data.size == n * (luma + chroma):
                per_frame = data.reshape(n, luma + chroma)[:, :luma]
                return per_frame.reshape(n, height, width).astype(np.uint16)
        raise CodecError(f"HM reconstruction has {data.size} samples, not {n} frames of "
                         f"{height}x{width}")

    def decode(self, bitstream: bytes, bit_depth: int) -> np.ndarray:
        return decode_hevc(bitstream, bit_depth)
