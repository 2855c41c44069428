"""Segmentation accuracy of the built-in segmenter over constant-QP x265 coding.

Held-out phantoms (seeds never used in training or validation), a 33-slice slab through the
heart of each (centred on the coronary tree's z-extent), coded with HM's low-delay-P anchor QP
pattern (``hm_anchor_frame_qps``) at paper QPs 12..42, 12-bit samples over the full 4096-HU
range (paper QP + 12 = coded QP, clipped at 51). Each decoded slab is segmented and scored
against the phantom's label; the uncompressed slab is the first row.

Usage::

    python bench/segment_vs_qp.py [--seeds 3000:3010] [--qps 12,17,22,27,32,37,42] [--slices 33]

Prints a table and writes ``bench/results/segment_vs_qp.json``
(``{"name", "description", "qps", "results": {metric: [per QP]}}``; index 0 is uncompressed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from dmic_core.defaults import QP_GRID  # the sweeps' grid: this bench explains their curves

RESULTS = Path(__file__).resolve().parent / "results"


def heart_slab(label: np.ndarray, n: int) -> tuple[int, int]:
    """``n`` frames centred on the z-extent of the vessel label."""
    zs = np.flatnonzero(np.asarray(label).reshape(label.shape[0], -1).any(axis=1))
    z = label.shape[0]
    mid = (int(zs[0]) + int(zs[-1])) // 2 if len(zs) else z // 2
    start = int(np.clip(mid - n // 2, 0, max(0, z - n)))
    return start, min(z, start + n)


def main(argv: Sequence[str] | None = None) -> int:
    from dmic_core.codecs.qp import hm_anchor_frame_qps, paper_to_coded_qp
    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.pipeline import CodingSetup, code_volume
    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation.config import TEST_SEEDS
    from dmic_core.segmentation.train import parse_seed_range, phantom_volume
    from dmic_core.volume import Volume
    from dmic_core.io.orientation import canonical_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=f"{TEST_SEEDS[0]}:{TEST_SEEDS[-1] + 1}", metavar="A:B")
    parser.add_argument("--qps", default=",".join(map(str, QP_GRID)), help="paper QPs")
    parser.add_argument("--slices", type=int, default=33)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--preset", default=None, help="x265 preset (default: the codec's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "segment_vs_qp.json")
    args = parser.parse_args(argv)
    seeds = list(parse_seed_range(args.seeds))
    qps = [int(q) for q in args.qps.split(",")]
    setup = CodingSetup(preset=args.preset, bit_depth=12)  # the default 12-bit window: the full HU range
    segmenter = load_segmenter(args.model, **({} if args.threads is None else {"threads": args.threads}))

    rows: dict[str, dict[str, list[float]]] = {}
    keys = ["original"] + [f"qp{q}" for q in qps]
    for key in keys:
        rows[key] = {"dice": [], "miou": [], "vessel_iou": [], "bpp": [], "psnr_hu": []}
    t0 = time.perf_counter()
    for seed in seeds:
        lv = phantom_volume(seed)
        s, e = heart_slab(lv.label, args.slices)
        slab: Volume = canonical_volume(np.asarray(lv.hu[s:e]), lv.spacing)
        label = np.asarray(lv.label[s:e])
        scores = segmentation_scores(segmenter.segment(slab), label)
        rows["original"]["dice"].append(scores["dice"])
        rows["original"]["miou"].append(scores["miou"])
        rows["original"]["vessel_iou"].append(scores["vessel_iou"])
        rows["original"]["bpp"].append(16.0)
        rows["original"]["psnr_hu"].append(float("inf"))
        for q in qps:
            frame_qps = hm_anchor_frame_qps(q, slab.n_frames)
            coded = code_volume(slab, frame_qps=frame_qps, setup=setup)
            scores = segmentation_scores(segmenter.segment(coded.recon), label)
            summary = coded.summary(slab)
            r = rows[f"qp{q}"]
            r["dice"].append(scores["dice"])
            r["miou"].append(scores["miou"])
            r["vessel_iou"].append(scores["vessel_iou"])
            r["bpp"].append(float(coded.encode.total_bits) / slab.hu.size)
            r["psnr_hu"].append(float(summary["psnr_hu"]))
        print(f"seed {seed}: slab {s}:{e} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    mean = {k: {m: float(np.mean(v)) for m, v in r.items()} for k, r in rows.items()}
    coded_qps = {q: int(paper_to_coded_qp(hm_anchor_frame_qps(q, args.slices), 12,
                                                  setup.mapping().window_hu)[0]) for q in qps}
    print(f"{'paper QP':>9} {'coded QP_I':>10} {'bits/voxel':>10} {'PSNR(HU)':>9} {'Dice':>7} {'vessel IoU':>10} {'mIoU':>7}")
    for key in keys:
        m = mean[key]
        qp_txt = "orig" if key == "original" else key[2:]
        cq = "-" if key == "original" else str(coded_qps[int(key[2:])])
        print(f"{qp_txt:>9} {cq:>10} {m['bpp']:>10.3f} {m['psnr_hu']:>9.2f} {m['dice']:>7.4f} "
              f"{m['vessel_iou']:>10.4f} {m['miou']:>7.4f}")
    result = {
        "name": f"segment_vs_qp-{segmenter.name}",
        "description": f"{segmenter.name} on {len(seeds)} held-out phantoms (seeds {args.seeds}), "
                       f"{args.slices}-slice heart slabs, x265 constant QP (HM LDP anchor pattern), "
                       f"12-bit over -1024..3071 HU; index 0 = uncompressed",
        "qps": ["original"] + qps,
        "coded_qp_i": [None] + [coded_qps[q] for q in qps],
        "results": {m: [mean[k][m] for k in keys] for m in ("dice", "miou", "vessel_iou", "bpp", "psnr_hu")},
        "per_seed": {k: rows[k] for k in keys},
        "seeds": seeds,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2).replace("Infinity", "null") + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
