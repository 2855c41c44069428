"""The point record and the one writer of point folders.

A *point* is one coded volume at one (method, setting). Its record is :class:`PointResult`:
:meth:`PointResult.row` is the row of every ``points.csv`` (sweeps, experiments, the app's
curves, batch tables), :meth:`PointResult.summary` what a job task stores, and
:meth:`PointResult.record` the ``result.json`` of its folder. :func:`write_point_folder` is the
only code that writes a point folder (``stream.hevc``, ``recon.nii.gz``, ``qp_map.npy``,
``result.json``), each file atomically (temporary name, then rename): sweep and job points,
``encode`` tasks and ``dmic encode`` alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from dmic_core.io import save_nifti
from dmic_core.jsonio import write_json

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.pipeline import CodedVolume

#: The columns of a point row, in order (``seconds_<stage>`` columns follow, one per timed stage).
POINT_COLUMNS = ("method", "setting", "bits", "bpp", "miou", "dice", "vessel_iou", "psnr_hu", "seconds")
#: Files of a point folder.
POINT_FILES = ("stream.hevc", "recon.nii.gz", "qp_map.npy", "result.json")


@dataclass
class PointResult:
    """Rate, task accuracy, fidelity and timings of one point."""

    method: str
    setting: float
    bits: int
    bpp: float
    miou: float
    dice: float
    vessel_iou: float
    psnr_hu: float
    seconds: dict[str, float] = field(default_factory=dict)
    paper_frame_qps: list[int] | None = None
    qp_map: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat row of ``points.csv``."""
        return {"method": self.method, "setting": self.setting, "bits": self.bits, "bpp": self.bpp,
                "miou": self.miou, "dice": self.dice, "vessel_iou": self.vessel_iou,
                "psnr_hu": self.psnr_hu, "seconds": round(sum(self.seconds.values()), 3),
                **{f"seconds_{k}": round(v, 4) for k, v in self.seconds.items()}}

    def summary(self) -> dict[str, Any]:
        """What a job task records for the point: the row and the frame QPs."""
        return {**self.row(), "paper_frame_qps": self.paper_frame_qps}

    def record(self, case: "Case") -> dict[str, Any]:
        """``result.json``: the row, the frame QPs, the method's and the scorer's details, and QP_I."""
        payload = {**self.row(), "paper_frame_qps": self.paper_frame_qps, **self.extra,
                   "reference": case.reference.kind, "segmenter": case.segmenter.name,
                   # the segmentation of the original against the reference: the ceiling of every
                   # point, and the test that label and model describe the same structure
                   "original_scores": dict(case.reference.original_scores)}
        if self.qp_map is not None:
            payload["qp_i"] = int(self.qp_map[0].min()) if self.paper_frame_qps is None else self.paper_frame_qps[0]
        return payload


def write_point_folder(out_dir: str | Path, coded: "CodedVolume",
                       record: dict[str, Any] | Callable[[float], dict[str, Any]]) -> Path:
    """Write a coded point into ``out_dir``: its stream, reconstruction (HU, on the input's grid),
    CTU QP map (int16, when the method set one) and ``record`` as ``result.json``; each atomically.

    ``record`` may be a function of the seconds the other files took to write, so that
    ``result.json`` (written last, once) can account for its own folder's writing."""
    start = time.perf_counter()
    write_point_files(out_dir, coded)
    return write_point_record(out_dir, coded, record(time.perf_counter() - start) if callable(record) else record)


def write_point_files(out_dir: str | Path, coded: "CodedVolume") -> Path:
    """The files of a point folder but ``result.json``: stream, reconstruction, QP map (each
    atomically). With :func:`write_point_record` after it, the same folder as
    :func:`write_point_folder`; ``run_point`` writes these while it segments the decode."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "stream.hevc.tmp"
    tmp.write_bytes(coded.encode.bitstream)
    tmp.replace(out_dir / "stream.hevc")
    save_nifti(coded.recon, coded.recon.hu, out_dir / "recon.nii.gz")
    if coded.qp_map is not None:
        tmp_map = out_dir / "qp_map.tmp.npy"
        np.save(tmp_map, np.asarray(coded.qp_map).astype(np.int16))
        tmp_map.replace(out_dir / "qp_map.npy")
    return out_dir


def write_point_record(out_dir: str | Path, coded: "CodedVolume", record: dict[str, Any]) -> Path:
    """``result.json`` of a point folder (atomically), naming the codec engine and its version."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = coded.encode.engine  # every result.json names the engine and its version
    write_json(out_dir / "result.json", {**record, "codec": engine["name"], "codec_version": engine["version"]})
    return out_dir
