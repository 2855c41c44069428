"""Does dropping the segmenter's low-confidence CTUs from the protected region help? (issue 13)

The extended oracle (two-level map on the *label*) saves far more than the same rule on the
segmenter's mask (docs/results/evaluation): part of its gain is that the coarse background wipes
out the segmenter's false positives, which the segmenter's own mask protects. On validation
phantoms, about a third of the CTUs the mask marks without any label in them have a peak vessel
probability below 0.9, against under 1% of the CTUs that hold label. This bench tests a
label-free *gate*: keep the mask only in CTUs (per frame) whose peak probability reaches
``--gate``, and run methods with the gated mask as their region of interest, against the same
methods on the plain mask and constant-QP HEVC, on *validation* phantoms only (it refuses
evaluation and test seeds, so whatever it chooses can later be reported on the protocol).

Usage::

    python bench/roi_gate.py --data work_dirs/agents_train/phantoms --seeds 6008,6000,6020,6012,6018,6013 \\
        --gate 0.9 --methods two_level_ext,dmic --workers 2

Prints the per-volume BD-rates and means and writes ``bench/results/roi_gate.json`` (point log
under ``--work``, so a rerun only adds what is missing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def gated_roi(image: str, gate: float, out: Path) -> Path:
    """Write the segmenter's mask of ``image`` kept only in CTUs whose peak probability >= ``gate``."""
    from dmic_core.io import load_volume
    from dmic_core.io.writers import save_nifti
    from dmic_core.maps import gate_ctus_by_confidence
    from dmic_core.segmentation import load_segmenter

    if out.is_file():
        return out
    volume = load_volume(image)
    seg = load_segmenter("builtin")
    mask = gate_ctus_by_confidence(seg.segment(volume), seg.probabilities(volume), gate)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_nifti(volume, mask, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--seeds", required=True, help="comma list of validation phantom seeds")
    parser.add_argument("--gate", type=float, default=0.9, help="peak vessel probability a CTU needs to stay protected")
    parser.add_argument("--methods", default="two_level_ext,dmic", help="protocol methods to run on both masks")
    parser.add_argument("--agents", default="assets/agents_dmic.pt", help="checkpoint of the dmic curve")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/roi_gate"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "roi_gate.json")
    args = parser.parse_args(argv)

    import pandas as pd

    from dmic_core.datasets.seeds import selection_seeds
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.protocol.run import ProtocolPlan, current_rows, run_protocol
    from dmic_core.protocol.summary import per_volume_bd, summarise
    from dmic_core.protocol.volumes import phantom_volume

    try:
        seeds = selection_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    methods = [m for m in args.methods.split(",") if m]
    tag = f"gate{args.gate:g}"
    plain = [phantom_volume(s, args.data) for s in seeds]
    gated = []
    for vol in plain:
        # a second path to the same image: the runner tells volumes apart by their image file
        link = args.work / "volumes" / f"{vol.name}+{tag}.img.nii.gz"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(Path(vol.image).resolve())
        roi = gated_roi(vol.image, args.gate, args.work / "volumes" / f"{vol.name}+{tag}.roi.nii.gz")
        gated.append(type(vol)(f"{vol.name}+{tag}", str(link), vol.label, vol.slices, vol.reference, str(roi)))
    agents = {"dmic:agents": args.agents}
    plan_plain = ProtocolPlan(plain, agents, oracle_volumes=0, methods=(ANCHOR, *methods))
    plan_gated = ProtocolPlan(gated, agents, oracle_volumes=0, methods=tuple(methods))
    start = time.perf_counter()
    run_protocol(plan_plain, args.work, workers=args.workers)
    log = run_protocol(plan_gated, args.work, workers=args.workers)  # the same log file, read after both
    rows = current_rows(log, plan_plain)
    for row in current_rows(log, plan_gated):  # the gated curves join their plain volume, renamed
        rows.append({**row, "volume": row["volume"].split("+")[0], "curve": f"{row['curve']}+{tag}"})
    points = pd.DataFrame(rows)
    per_volume = per_volume_bd(points)
    summary = summarise(per_volume)
    table = per_volume.pivot(index="method", columns="volume", values="bd_rate_pct")
    print(table.round(1).to_string())
    print(summary[["curve", "volumes", "bd_rate_mean", "bd_rate_low", "bd_rate_high", "bd_miou_mean"]].to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/roi_gate.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "validation_volumes": [v.as_dict() for v in plain], "gate": args.gate,
        "seconds": round(time.perf_counter() - start, 1),
        "per_volume": json.loads(per_volume.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
    }, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
