"""Code a CT volume end to end: HU -> codec samples -> HEVC -> decoded HU, with its numbers.

The one place that joins the transforms, the QP facts and a codec, so the CLI, sweeps, agents
and the app all code volumes the same way and speak paper QPs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from dmic_core.codecs import get_codec
from dmic_core.codecs.base import EncodeResult
from dmic_core.codecs.qp import (CODEC_QP_MAX, CODEC_QP_MIN, absolute_qp_map, coded_to_paper_qp,
                                 ctu_grid_shape, pad_ctu_grid, paper_to_coded_qp, qp_shift)
from dmic_core.metrics.quality import hu_errors, psnr_hu, rate_stats
from dmic_core.transforms.hu import SampleMapping, crop_frames, pad_frames
from dmic_core.volume import Volume


@dataclass(frozen=True)
class CodingSetup:
    """How volumes are coded: backend, encoder preset, sample bit depth and HU window.

    ``window=None`` takes :class:`SampleMapping`'s default for the bit depth (the full HU range
    at 12 bits, the 1024-HU CCTA window at 8 and 10 bits).
    """

    codec: str = "x265"
    preset: str | None = None
    bit_depth: int = 12
    window: tuple[float, float] | None = None

    def mapping(self) -> SampleMapping:
        return SampleMapping(self.bit_depth) if self.window is None else SampleMapping(self.bit_depth, self.window)

    def make_codec(self):
        kwargs: dict[str, Any] = {}
        if self.preset is not None:
            if self.codec != "x265":
                raise ValueError(f"a preset applies to x265 only, not to {self.codec}")
            kwargs["preset"] = self.preset
        return get_codec(self.codec, **kwargs)


#: Coding used by agents, sweeps and the app: the default 12 bits over the full HU range (nothing
#: windowed away). Paper QPs 12..53 map to coded QPs 0..41 there, so no action is clipped.
TASK_CODING = CodingSetup()


@dataclass
class CodedVolume:
    """A coded volume: the decoded HU volume, the encoder's output and the QPs in both units."""

    recon: Volume
    encode: EncodeResult
    setup: CodingSetup
    paper_frame_qps: np.ndarray | None
    coded_frame_qps: np.ndarray | None
    ctu_dqp: np.ndarray | None
    qp_map: np.ndarray | None  # absolute paper QP per CTU (frames, rows, cols)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self, original: Volume, mask: np.ndarray | None = None) -> dict[str, Any]:
        """The numbers of ``result.json``: rate, fidelity, QPs and timings."""
        mapping = self.setup.mapping()
        out: dict[str, Any] = {
            "codec": self.encode.codec,
            "codec_version": self.encode.engine["version"],
            "codec_params": self.encode.params,
            "bit_depth": self.setup.bit_depth,
            "window_hu": list(mapping.window),
            "qp_shift": qp_shift(self.setup.bit_depth, mapping.window_hu),
            "frames": original.n_frames,
            "paper_frame_qps": None if self.paper_frame_qps is None else self.paper_frame_qps.tolist(),
            "coded_frame_qps": None if self.coded_frame_qps is None else self.coded_frame_qps.tolist(),
            "encoder_avg_qp": np.round(self.encode.avg_qp, 3).tolist(),
            "bits_per_frame": self.encode.bits_per_frame.tolist(),
            **rate_stats(self.encode.total_bits, original.shape),
            "psnr_hu": psnr_hu(original.hu, self.recon.hu),
            **hu_errors(original.hu, self.recon.hu, mask),
            "clipped_fraction": mapping.clipped_fraction(original.hu),
            "encode_seconds": self.encode.encode_seconds,
            "decode_seconds": self.encode.decode_seconds,
            **{f"{k}_seconds": v for k, v in self.seconds.items()},
        }
        if self.ctu_dqp is not None:
            out["mean_ctu_dqp"] = float(np.mean(self.ctu_dqp))
        return out


def code_volume(volume: Volume, *, frame_qps: np.ndarray | None, ctu_dqp: np.ndarray | None = None,
                setup: CodingSetup = CodingSetup(), bitrate_kbps: float | None = None,
                progress: Callable[[int, int], None] | None = None) -> CodedVolume:
    """Code every frame of ``volume`` and decode it back to HU on the same grid.

    Args:
        frame_qps: paper QP of each frame (see :mod:`dmic_core.codecs.qp` for the rules that make
            them), or ``None`` for rate control at ``bitrate_kbps``.
        ctu_dqp: integer QP offset per 64x64 CTU, ``(frames, rows, cols)`` of the *unpadded*
            frame. Padding to the codec's frame size (multiples of 8; for x265 also at least one
            CTU and never exactly one CTU wide) can add a CTU row or column: it gets the offset
            of its neighbour, so the replicated edge is coded like the edge it copies.
    """
    start = time.perf_counter()
    mapping = setup.mapping()
    n, h, w = volume.shape
    codec = setup.make_codec()
    samples = pad_frames(mapping.to_samples(volume.hu), size=codec.coded_frame_size(h, w))
    coded_qps = None
    if frame_qps is not None:
        frame_qps = np.asarray(frame_qps, dtype=np.int32)
        if frame_qps.shape != (n,):
            raise ValueError(f"need one QP per frame ({n}), got shape {frame_qps.shape}")
        coded_qps = paper_to_coded_qp(frame_qps, setup.bit_depth, mapping.window_hu)
    offsets = None
    if ctu_dqp is not None:
        ctu_dqp = np.asarray(ctu_dqp, dtype=np.int32)
        rows, cols = ctu_grid_shape(h, w)
        if ctu_dqp.shape != (n, rows, cols):
            raise ValueError(f"CTU QP-offset map has shape {ctu_dqp.shape}, expected {(n, rows, cols)}")
        offsets = pad_ctu_grid(ctu_dqp, *samples.shape[1:])
    prepared = time.perf_counter()
    result = codec.encode(samples, setup.bit_depth, coded_qps, offsets,
                          bitrate_kbps=bitrate_kbps, progress=progress)
    coded = time.perf_counter()
    del samples  # a volume of memory the rest does not need
    recon_hu = mapping.to_hu(crop_frames(result.recon, (h, w)))
    qp_map = None
    if frame_qps is not None:  # in paper QPs, limited to what the codec could code (0..51 coded)
        lo, hi = coded_to_paper_qp([CODEC_QP_MIN, CODEC_QP_MAX], setup.bit_depth, mapping.window_hu)
        qp_map = np.clip(absolute_qp_map(frame_qps, ctu_dqp, h, w), int(np.ceil(lo)), int(np.floor(hi)))
    return CodedVolume(
        recon=volume.with_array(recon_hu.astype(np.int16)), encode=result, setup=setup,
        paper_frame_qps=frame_qps, coded_frame_qps=coded_qps, ctu_dqp=ctu_dqp, qp_map=qp_map,
        seconds={"prepare": prepared - start, "code_total": coded - prepared,
                 "finish": time.perf_counter() - coded},
    )


def setup_dict(setup: CodingSetup) -> dict[str, Any]:
    return asdict(setup)
