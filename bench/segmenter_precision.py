"""float32 against bfloat16 inference of the shipped U-Net: speed, mask agreement and accuracy (issue 17).

``builtin-bf16`` runs the same weights under ``torch.autocast`` in bfloat16. It is the one lever
that halves the whole-volume job's largest stage (two U-Net passes), but its masks are not
bit-identical to float32's, so it is opt-in. This bench states what it changes, on volumes that
chose nothing about it: the segmenter's held-out test phantoms (seeds 3000-3009, whole volumes,
scored against their labels) and the shared real CT crop (no label: agreement only).

Per volume: seconds of each pass (run back to back in one process; their ratio is the figure to
compare on a shared machine), voxels whose mask differs, Dice of the bf16 mask against the
float32 mask, and mIoU / Dice of each against the label.

Usage::

    python bench/segmenter_precision.py [--seeds 3000:3010] [--out bench/results/segmenter_precision.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def compare(name: str, volume, label: np.ndarray | None, fp32, bf16) -> dict:
    from dmic_core.metrics.task import segmentation_scores

    t0 = time.perf_counter()
    m32 = fp32.segment(volume)
    t1 = time.perf_counter()
    m16 = bf16.segment(volume)
    t2 = time.perf_counter()
    row = {"volume": name, "frames": int(volume.n_frames), "shape": list(volume.shape),
           "float32_s": round(t1 - t0, 2), "bfloat16_s": round(t2 - t1, 2), "speedup": round((t1 - t0) / (t2 - t1), 2),
           "voxels_differ": int((m32 != m16).sum()), "fraction_differ": float((m32 != m16).mean()),
           "dice_bf16_vs_fp32": round(segmentation_scores(m16, m32)["dice"], 5)}
    if label is not None:
        s32, s16 = segmentation_scores(m32, label), segmentation_scores(m16, label)
        row.update({"miou_float32": round(s32["miou"], 5), "miou_bfloat16": round(s16["miou"], 5),
                    "dice_float32": round(s32["dice"], 5), "dice_bfloat16": round(s16["dice"], 5)})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="3000:3010", help="segmenter-test phantom seeds (A:B or a comma list)")
    parser.add_argument("--no-real-ct", action="store_true", help="skip the shared real CT crop")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dmic-bench-segprec")
    parser.add_argument("--out", type=Path, default=RESULTS / "segmenter_precision.json")
    args = parser.parse_args(argv)

    from dmic_core.datasets.seeds import parse_seeds, role_of
    from dmic_core.defaults import shared_data_dir
    from dmic_core.io import load_label, load_volume
    from dmic_core.protocol.volumes import phantom_volume
    from dmic_core.runtime import configure_allocator
    from dmic_core.segmentation import load_segmenter

    configure_allocator()
    seeds = parse_seeds(args.seeds)
    bad = [s for s in seeds if role_of(s) is None or role_of(s).name != "segmenter-test"]
    if bad:
        raise SystemExit(f"seeds {bad} are not the segmenter's held-out test phantoms (3000-3009)")
    fp32, bf16 = load_segmenter("builtin"), load_segmenter("builtin-bf16")
    rows = []
    print(f"{'volume':22s} {'frames':>6s} {'fp32 s':>7s} {'bf16 s':>7s} {'x':>5s} {'differ':>8s} "
          f"{'Dice agree':>10s} {'mIoU fp32':>9s} {'mIoU bf16':>9s}")
    cases = [(f"phantom-{s}", s) for s in seeds]
    real = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
    if not args.no_real_ct and real.is_file():
        cases.append(("ct-aorta-crop", None))
    for name, seed in cases:
        if seed is None:
            volume, label = load_volume(real), None
        else:
            ev = phantom_volume(seed, args.data)
            volume = load_volume(ev.image)
            label = (load_label(ev.label, like=volume) > 0).astype(np.uint8)
        row = compare(name, volume, label, fp32, bf16)
        rows.append(row)
        print(f"{name:22s} {row['frames']:6d} {row['float32_s']:7.2f} {row['bfloat16_s']:7.2f} {row['speedup']:5.2f} "
              f"{row['voxels_differ']:8d} {row['dice_bf16_vs_fp32']:10.5f} {row.get('miou_float32', float('nan')):9.4f} "
              f"{row.get('miou_bfloat16', float('nan')):9.4f}", flush=True)
    labelled = [r for r in rows if "miou_float32" in r]
    summary = {"speedup_total": round(sum(r["float32_s"] for r in rows) / sum(r["bfloat16_s"] for r in rows), 2),
               "fraction_differ_max": max(r["fraction_differ"] for r in rows),
               "dice_agree_min": min(r["dice_bf16_vs_fp32"] for r in rows),
               "miou_change_mean": round(float(np.mean([r["miou_bfloat16"] - r["miou_float32"] for r in labelled])), 6),
               "miou_change_max_abs": round(float(np.max([abs(r["miou_bfloat16"] - r["miou_float32"]) for r in labelled])), 6)}
    print("\n" + json.dumps(summary))
    report = {"command": "python bench/segmenter_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpus": len(os.sched_getaffinity(0)), "machine": platform.processor() or platform.machine(),
              "load_after": [round(x, 2) for x in os.getloadavg()], "volumes": rows, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
