"""One point: decide, encode, decode, segment, score and (optionally) write its folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from dmic_core.evaluation.accuracy import task_accuracy
from dmic_core.evaluation.case import Case
from dmic_core.evaluation.points import PointResult, write_point_folder
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
    ``segment`` (the decode), ``score`` and, with ``out_dir``, ``write``.
    """
    decide = get_decider(spec.method, deciders)
    decision = decide(case, spec.setting, setup, **method_options)
    coded = code_volume(case.volume, frame_qps=decision.frame_qps, ctu_dqp=decision.ctu_dqp, setup=setup,
                        bitrate_kbps=decision.bitrate_kbps, progress=progress)
    start = time.perf_counter()
    scores = task_accuracy(case.segmenter, coded.recon, case.reference)
    seg_seconds = time.perf_counter() - start
    summary = coded.summary(case.volume, case.reference.reference)
    score_seconds = time.perf_counter() - start - seg_seconds
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
        def record(write_seconds: float) -> dict[str, Any]:
            result.seconds["write"] = write_seconds
            return result.record(case)

        write_point_folder(out_dir, coded, record)
    return result
