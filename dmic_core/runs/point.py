"""One point: decide, encode, decode, segment, score and (optionally) write its folder."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

from dmic_core.evaluation.accuracy import task_accuracy
from dmic_core.evaluation.case import Case
from dmic_core.evaluation.points import PointResult, write_point_files, write_point_record
from dmic_core.methods.base import Decider, PointSpec
from dmic_core.methods.registry import get_decider
from dmic_core.pipeline import TASK_CODING, CodingSetup, code_volume


def run_point(case: Case, spec: PointSpec, *, setup: CodingSetup = TASK_CODING, out_dir: str | Path | None = None,
              progress: Callable[[int, int], None] | None = None, deciders: Mapping[str, Decider] | None = None,
              stage_seconds: Mapping[str, float] | None = None, **method_options: Any) -> PointResult:
    """Decide, encode, decode, segment and score one point (real encode, real model).

    ``method_options`` go to the decider (``agents`` for dmic, ``anchor_bits`` for ratecontrol);
    ``deciders`` adds methods outside the registry; with ``out_dir`` the point's folder is written
    (:func:`~dmic_core.evaluation.points.write_point_folder`); ``progress(done, total)`` is called
    per coded frame; ``stage_seconds`` (e.g. ``startup``, ``read``, ``mask`` of ``dmic compress``)
    lead the point's ``seconds``, so that its record accounts for the whole job. ``seconds`` then
    holds every stage in the order they run: those, ``decide``, ``to_samples`` (HU -> codec
    samples), ``encode``, ``decode`` (the independent decoder's check), ``codec_other``, ``to_hu``,
    ``segment`` (the decode), ``score`` and, with ``out_dir``, ``write`` (the folder's files are
    written in a thread while the decode is segmented and scored; ``write`` is the wall time it
    added after them).
    """
    decide = get_decider(spec.method, deciders)
    decision = decide(case, spec.setting, setup, **method_options)
    coded = code_volume(case.volume, frame_qps=decision.frame_qps, ctu_dqp=decision.ctu_dqp, setup=setup,
                        bitrate_kbps=decision.bitrate_kbps, progress=progress)
    if coded.encode.recon is not None and coded.recon is not None:
        coded.encode.recon = None  # the padded samples: coded.recon holds them in HU (saves a volume)
    pool = writer = None
    if out_dir is not None:  # stream, recon and QP map are written while the decode is segmented
        pool = ThreadPoolExecutor(1, thread_name_prefix="point-writer")
        writer = pool.submit(_timed, write_point_files, out_dir, coded)
    try:
        start = time.perf_counter()
        scores = task_accuracy(case.segmenter, coded.recon, case.reference)
        seg_seconds = time.perf_counter() - start
        summary = coded.summary(case.volume, case.reference.reference)
        score_seconds = time.perf_counter() - start - seg_seconds
        waited = time.perf_counter()
        files_seconds = writer.result() if writer is not None else 0.0
        waited = time.perf_counter() - waited
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    # what the codec call spent outside its encoder and decoder (stream assembly, copies)
    other = max(0.0, coded.seconds.get("code_total", 0.0) - coded.encode.encode_seconds - coded.encode.decode_seconds)
    result = PointResult(
        method=spec.method, setting=float(spec.setting), bits=int(summary["bits"]), bpp=float(summary["bpp"]),
        miou=scores["miou"], dice=scores["dice"], vessel_iou=scores["vessel_iou"],
        psnr_hu=float(summary["psnr_hu"]),
        seconds={**(stage_seconds or {}), "decide": decision.seconds,
                 "to_samples": coded.seconds.get("prepare", 0.0), "encode": coded.encode.encode_seconds,
                 "decode": coded.encode.decode_seconds, "codec_other": other,
                 "to_hu": coded.seconds.get("finish", 0.0), "segment": seg_seconds, "score": score_seconds},
        paper_frame_qps=None if coded.paper_frame_qps is None else coded.paper_frame_qps.tolist(),
        qp_map=coded.qp_map, extra={**decision.info, "summary": summary, "scores": scores},
    )
    if out_dir is not None:
        # "write" is what writing added to the wall time (waiting for the writer, result.json); the
        # writer's own time, overlapped with segment and score, is in overlapped_seconds
        written = time.perf_counter()
        result.extra["overlapped_seconds"] = {"write_files": files_seconds}
        result.seconds["write"] = waited
        record = result.record(case)
        write_point_record(out_dir, coded, record)
        result.seconds["write"] = waited + (time.perf_counter() - written)
    return result


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
