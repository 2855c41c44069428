"""Rate-vs-accuracy sweeps: every method at every setting on one volume, then BD against HEVC.

A point is one (method, setting): the method decides frame QPs and CTU offsets (or a target rate),
the volume is really encoded and decoded, and the decoded volume is segmented and scored with
:func:`dmic_core.evaluation.task_accuracy`. Points run in worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from dmic_core.agents.handcrafted import HANDCRAFTED, handcrafted_offsets
from dmic_core.codecs.qp import PAPER_QP_I_MAX, PAPER_QP_I_MIN, dmic_frame_qps, hm_anchor_frame_qps
from dmic_core.defaults import LAMBDA_GRID, QP_GRID
from dmic_core.evaluation import TaskReference, make_reference, task_accuracy
from dmic_core.io import load_label, load_volume, save_nifti
from dmic_core.metrics.bd import bd_quality, bd_rate, upper_envelope
from dmic_core.pipeline import TASK_CODING, CodingSetup, CodedVolume, code_volume
from dmic_core.segmentation import Segmenter, load_segmenter
from dmic_core.volume import Volume

#: Nominal frame rate that turns a target rate in bits per frame into x265's kbps.
RATE_CONTROL_FPS = 25.0


@dataclass(frozen=True)
class PointSpec:
    """One rate point. ``setting`` is the base QP (hevc, ratecontrol: the anchor QP whose rate it
    targets), the paper QP_I (hand-crafted maps) or lambda (dmic)."""

    method: str
    setting: float


@dataclass
class Case:
    """A volume to sweep: the original, its optional label, and the task reference."""

    volume: Volume
    label: np.ndarray | None
    segmenter: Segmenter
    reference: TaskReference
    name: str = "case"


def load_case(image_path: str | Path, label_path: str | Path | None = None,
              segmenter: str | Segmenter = "builtin", slices: tuple[int, int] | None = None) -> Case:
    """Read a volume (and label), optionally keep frames ``slices``, and segment the original once."""
    volume = load_volume(image_path)
    label = load_label(label_path, like=volume) if label_path is not None else None
    if slices is not None and tuple(slices) != (0, volume.n_frames):
        volume = volume.slab(*slices)
        label = None if label is None else label[slices[0]:slices[1]]
    seg = load_segmenter(segmenter) if isinstance(segmenter, str) else segmenter
    return Case(volume, label, seg, make_reference(seg, volume, label), Path(image_path).name)


@dataclass
class PointResult:
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


@dataclass
class Decision:
    """What a method decides for a volume: paper frame QPs and CTU offsets, or a target rate."""

    frame_qps: np.ndarray | None
    ctu_dqp: np.ndarray | None = None
    bitrate_kbps: float | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def _decide_hevc(case: Case, setting: float, setup: CodingSetup, **_: Any) -> Decision:
    return Decision(hm_anchor_frame_qps(int(setting), case.volume.n_frames))


def _decide_handcrafted(kind: str) -> Callable[..., Decision]:
    def decide(case: Case, setting: float, setup: CodingSetup, **_: Any) -> Decision:
        start = time.perf_counter()
        qp_i = int(np.clip(int(setting), PAPER_QP_I_MIN, PAPER_QP_I_MAX))
        dqp = handcrafted_offsets(case.reference.roi, kind)
        return Decision(dmic_frame_qps(qp_i, case.volume.n_frames), dqp, seconds=time.perf_counter() - start)

    return decide


def _decide_dmic(case: Case, setting: float, setup: CodingSetup, agents: str | None = None, **_: Any) -> Decision:
    """The agents of checkpoint ``agents`` (default :data:`dmic_core.defaults.DEFAULT_AGENTS`; a
    missing checkpoint is an error naming it, never a silent fallback to other agents)."""
    from dmic_core.agents.inference import load_agents

    start = time.perf_counter()
    decision = load_agents(agents).decide(case.volume.hu, case.reference.roi, float(setting))
    return Decision(decision.frame_qps, decision.offsets, seconds=time.perf_counter() - start,
                    info={"qp_i": decision.qp_i, "agent_seconds": decision.seconds})


def _decide_ratecontrol(case: Case, setting: float, setup: CodingSetup, anchor_bits: float | None = None,
                        **_: Any) -> Decision:
    """x265 ABR at the rate the constant-QP anchor reached at base QP ``setting``."""
    start = time.perf_counter()
    info: dict[str, Any] = {}
    if anchor_bits is None:
        anchor = code_volume(case.volume, frame_qps=hm_anchor_frame_qps(int(setting), case.volume.n_frames),
                             setup=setup)
        anchor_bits = anchor.encode.total_bits
        info["anchor_encoded"] = True
    kbps = anchor_bits / case.volume.n_frames * RATE_CONTROL_FPS / 1000.0
    info["target_bits"] = anchor_bits
    return Decision(None, None, bitrate_kbps=kbps, seconds=time.perf_counter() - start, info=info)


#: The method registry: every method name anywhere (CLI choices, the app, batches) is a key here.
DECIDERS: dict[str, Callable[..., Decision]] = {
    "hevc": _decide_hevc, "dmic": _decide_dmic,
    **{kind: _decide_handcrafted(kind) for kind in HANDCRAFTED},
    "ratecontrol": _decide_ratecontrol,
}
#: Method names in display order: ``tuple(DECIDERS)``.
METHOD_NAMES: tuple[str, ...] = tuple(DECIDERS)


def run_point(case: Case, spec: PointSpec, *, setup: CodingSetup = TASK_CODING, out_dir: Path | None = None,
              progress: Callable[[int, int], None] | None = None, **method_options: Any) -> PointResult:
    """Decide, encode, decode, segment and score one point (real encode, real model)."""
    if spec.method not in DECIDERS:
        raise ValueError(f"unknown method {spec.method!r}; choose from {', '.join(METHOD_NAMES)}")
    decision = DECIDERS[spec.method](case, spec.setting, setup, **method_options)
    coded = code_volume(case.volume, frame_qps=decision.frame_qps, ctu_dqp=decision.ctu_dqp, setup=setup,
                        bitrate_kbps=decision.bitrate_kbps, progress=progress)
    start = time.perf_counter()
    scores = task_accuracy(case.segmenter, coded.recon, case.reference)
    seg_seconds = time.perf_counter() - start
    summary = coded.summary(case.volume, case.reference.reference)
    result = PointResult(
        method=spec.method, setting=float(spec.setting), bits=int(summary["bits"]), bpp=float(summary["bpp"]),
        miou=scores["miou"], dice=scores["dice"], vessel_iou=scores["vessel_iou"],
        psnr_hu=float(summary["psnr_hu"]),
        seconds={"decide": decision.seconds, "encode": coded.encode.encode_seconds,
                 "decode": coded.encode.decode_seconds, "segment": seg_seconds},
        paper_frame_qps=None if coded.paper_frame_qps is None else coded.paper_frame_qps.tolist(),
        qp_map=coded.qp_map, extra={**decision.info, "summary": summary, "scores": scores},
    )
    if out_dir is not None:
        write_point(out_dir, case, coded, result)
    return result


def write_point(out_dir: Path, case: Case, coded: CodedVolume, result: PointResult) -> None:
    """Write a point's stream, reconstruction, QP map and result.json (each atomically)."""
    from dmic_core.jsonio import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "stream.hevc.tmp"
    tmp.write_bytes(coded.encode.bitstream)
    tmp.replace(out_dir / "stream.hevc")
    save_nifti(coded.recon, coded.recon.hu, out_dir / "recon.nii.gz")
    if result.qp_map is not None:
        tmp_map = out_dir / "qp_map.tmp.npy"
        np.save(tmp_map, result.qp_map.astype(np.int16))
        tmp_map.replace(out_dir / "qp_map.npy")
    payload = {**result.row(), "paper_frame_qps": result.paper_frame_qps, **result.extra,
               "reference": case.reference.kind, "segmenter": case.segmenter.name}
    if result.qp_map is not None:
        payload["qp_i"] = int(result.qp_map[0].min()) if result.paper_frame_qps is None else result.paper_frame_qps[0]
    write_json(out_dir / "result.json", payload)


def default_specs(methods: Iterable[str] = ("hevc", "dmic"), qps: Sequence[float] = QP_GRID,
                  lambdas: Sequence[float] = LAMBDA_GRID) -> list[PointSpec]:
    """The points of a sweep: QPs for QP-driven methods, lambdas for DMIC."""
    specs = []
    for method in methods:
        if method not in DECIDERS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_NAMES)}")
        settings = lambdas if method == "dmic" else qps
        if method in HANDCRAFTED:
            settings = sorted({int(np.clip(q, PAPER_QP_I_MIN, PAPER_QP_I_MAX)) for q in qps})
        specs.extend(PointSpec(method, float(s)) for s in settings)
    return specs


# --- running many points ------------------------------------------------------------------------

_WORKER_CASE: Case | None = None


def _init_worker(image: str, label: str | None, segmenter: str, slices: tuple[int, int] | None) -> None:
    global _WORKER_CASE
    import torch

    torch.set_num_threads(1)
    _WORKER_CASE = load_case(image, label, segmenter, slices)


def _run_in_worker(spec: PointSpec, setup: CodingSetup, options: dict[str, Any]) -> PointResult:
    assert _WORKER_CASE is not None
    result = run_point(_WORKER_CASE, spec, setup=setup, **options)
    result.qp_map = None  # keep inter-process payloads small; maps are written per point when asked
    return result


def run_sweep(image: str | Path, label: str | Path | None, specs: Sequence[PointSpec], *,
              setup: CodingSetup = TASK_CODING, segmenter: str = "builtin", slices: tuple[int, int] | None = None,
              workers: int | None = None, agents: str | None = None,
              on_point: Callable[[PointResult, int, int], None] | None = None) -> pd.DataFrame:
    """Run ``specs`` (anchor points first, so rate control can reuse their rates) in worker processes."""
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    first = [s for s in specs if s.method == "hevc"]
    rest = [s for s in specs if s.method != "hevc"]
    results: list[PointResult] = []
    anchor_bits: dict[float, int] = {}
    args = (str(image), None if label is None else str(label), segmenter, slices)
    # spawn, not fork: forking a process that holds other libraries' threads (gRPC from Ray, OpenMP)
    # can deadlock the child.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=args) as pool:
        for batch in (first, rest):
            futures = []
            for spec in batch:
                options: dict[str, Any] = {}
                if spec.method == "dmic" and agents:
                    options["agents"] = agents
                if spec.method == "ratecontrol" and spec.setting in anchor_bits:
                    options["anchor_bits"] = anchor_bits[spec.setting]
                futures.append(pool.submit(_run_in_worker, spec, setup, options))
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if result.method == "hevc":
                    anchor_bits[result.setting] = result.bits
                if on_point is not None:
                    on_point(result, len(results), len(specs))
    frame = pd.DataFrame([r.row() for r in results])
    return frame.sort_values(["method", "bpp"]).reset_index(drop=True)


def bd_table(points: pd.DataFrame, anchor: str = "hevc", envelope: bool = True) -> pd.DataFrame:
    """BD-rate (%) and BD-mIoU (percentage points) of each method against ``anchor``.

    With ``envelope`` each curve is first reduced to its upper envelope (points beaten by a cheaper
    point are dropped): mIoU saturates at high rates and wobbles by a few 1e-4, which would
    otherwise make every curve "non-monotonic" and its BD undefined.
    """
    rows = []
    base = points[points.method == anchor].sort_values("bpp")
    for method, group in points.groupby("method"):
        if method == anchor:
            continue
        group = group.sort_values("bpp")
        row: dict[str, Any] = {"method": method, "points": len(group)}
        for metric, label in (("miou", "miou"), ("psnr_hu", "psnr")):
            ar, aq, tr, tq = base.bpp.values, base[metric].values, group.bpp.values, group[metric].values
            if envelope:
                ar, aq = upper_envelope(ar, aq)
                tr, tq = upper_envelope(tr, tq)
            rate = bd_rate(ar, aq, tr, tq)
            quality = bd_quality(ar, aq, tr, tq)
            scale = 100.0 if metric == "miou" else 1.0
            row[f"bd_rate_{label}_pct"] = rate.value
            row[f"bd_{label}" + ("_pp" if metric == "miou" else "_db")] = quality.value * scale
            row[f"reason_{label}"] = rate.reason or quality.reason
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.rename(columns={"bd_rate_miou_pct": "bd_rate_pct", "bd_miou_pp": "bd_miou_pp"})
        table["reason"] = table["reason_miou"]
    return table


def write_sweep(out_dir: Path, points: pd.DataFrame, meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """``points.csv``, ``bd.json`` and ``curves.html`` (plotly) in ``out_dir``."""
    from dmic_core.plotting import rate_curves_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"points": out_dir / "points.csv", "bd": out_dir / "bd.json", "figure": out_dir / "curves.html"}
    tmp = paths["points"].with_suffix(".csv.tmp")
    points.to_csv(tmp, index=False)
    tmp.replace(paths["points"])
    table = bd_table(points)
    bd = {"anchor": "hevc", "meta": meta or {},
          "methods": json.loads(table.to_json(orient="records")) if not table.empty else []}
    tmp = paths["bd"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(bd, indent=2) + "\n")
    tmp.replace(paths["bd"])
    figure = rate_curves_figure(points)
    tmp = paths["figure"].with_suffix(".html.tmp")
    figure.write_html(str(tmp), include_plotlyjs=True)
    tmp.replace(paths["figure"])
    return paths
