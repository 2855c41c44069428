"""Is the default agents' finest QP_I (26 at every lambda from 20 up) what their reward asks for?

The protocol's log shows the shipped agents choosing QP_I 26 for lambda 20, 50 and 100, and the
decision does not move even at lambda 10^5 (``DMICAgents.decide``): the agents never reach the
anchor's finer half (QP 14-22). Either the reward they were trained on really prefers 26 there
(the task's accuracy has stopped rising: a finer I frame buys no mIoU against the label), or it is
a training artefact. This bench answers it with real encodes on *validation* phantoms (it refuses
evaluation and test seeds): each clip (the 33-frame heart slab) is coded at forced QP_I values with
the agents' own CTU offsets for that QP_I, and the reward ``-(R + lambda D)`` of each is computed at
several lambdas against the two references the product uses:

* ``label``: the ground truth (the training reward and the protocol's phantoms);
* ``segmentation``: the segmentation of the original (what a scan without a label is scored
  against: the protocol's real CT, ``dmic compress`` and the app).

Usage::

    python bench/frame_qp_ceiling.py --data work_dirs/agents_train/phantoms --seeds 6003,6021,6019,6004,6010,6011

Prints, per reference and lambda, the QP_I with the best mean reward and how often each QP_I wins
per clip; writes ``bench/results/frame_qp_ceiling.json`` with every outcome.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
QP_IS = (29, 26, 23, 20, 17)
LAMBDAS = (10.0, 20.0, 50.0, 100.0)


def clip_outcomes(seed: int, data: Path, agents_path: str, qp_is=QP_IS, decide_lambda: float = 100.0) -> list[dict]:
    """Bits and mIoU (against the label and against the original's segmentation) of one validation
    phantom's heart slab at each forced QP_I, with the agents' CTU offsets for it."""
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.env import RealEnv
    from dmic_core.io import load_label, load_volume
    from dmic_core.metrics.task import segmentation_scores
    from dmic_core.pipeline import TASK_CODING, code_volume
    from dmic_core.protocol.volumes import phantom_volume
    from dmic_core.segmentation import load_segmenter

    vol_spec = phantom_volume(seed, data)
    volume = load_volume(vol_spec.image)
    label = load_label(vol_spec.label, like=volume) > 0
    a, b = vol_spec.slices
    segmenter = load_segmenter("builtin")
    # the environment the agents train in: its mask (the original's segmentation) and its reference rate
    env = RealEnv(volume.slab(a, b), segmenter, label[a:b])
    clip, original = env.volume, env.mask > 0
    agents = DMICAgents.load(agents_path)
    references = {"label": label[a:b], "segmentation": original}
    ceiling = {k: segmentation_scores(original, ref)["miou"] for k, ref in references.items()}
    bits_ref = env.bits_ref
    rows = []
    for qp_i in qp_is:
        decision = agents.decide(clip.hu, original.astype(np.uint8), decide_lambda, qp_i=qp_i)
        coded = code_volume(clip, frame_qps=decision.frame_qps, ctu_dqp=decision.offsets, setup=TASK_CODING)
        decoded = segmenter.segment(coded.recon) > 0
        bits = float(coded.encode.total_bits)
        row = {"volume": vol_spec.name, "qp_i": qp_i, "bits": bits, "rate": bits / bits_ref,
               "mean_offset": float(np.mean(decision.offsets))}
        for kind, ref in references.items():
            row[f"miou_{kind}"] = segmentation_scores(decoded, ref)["miou"]
            row[f"drop_{kind}"] = ceiling[kind] - row[f"miou_{kind}"]
        rows.append(row)
        print(f"  {vol_spec.name} QP_I {qp_i}: rate {row['rate']:.3f}, mIoU label {row['miou_label']:.4f}, "
              f"vs original {row['miou_segmentation']:.4f}", flush=True)
    return rows


def best_qp_table(rows: list[dict], lambdas=LAMBDAS) -> list[dict]:
    """Per reference and lambda: the QP_I of the best mean reward over the clips, and per-clip wins."""
    volumes = sorted({r["volume"] for r in rows})
    qp_is = sorted({r["qp_i"] for r in rows}, reverse=True)
    out = []
    for kind in ("label", "segmentation"):
        for lam in lambdas:
            reward = {(r["volume"], r["qp_i"]): -(r["rate"] + lam * r[f"drop_{kind}"]) for r in rows}
            mean = {q: float(np.mean([reward[(v, q)] for v in volumes])) for q in qp_is}
            wins = {q: 0 for q in qp_is}
            for v in volumes:
                wins[max(qp_is, key=lambda q: reward[(v, q)])] += 1
            out.append({"reference": kind, "lambda": lam, "best_qp_i": max(mean, key=mean.get),
                        "mean_reward": {str(q): round(m, 4) for q, m in mean.items()},
                        "wins": {str(q): w for q, w in wins.items()}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder for phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--seeds", required=True, help="comma list of validation phantom seeds")
    parser.add_argument("--agents", default="assets/agents_dmic.pt")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "frame_qp_ceiling.json")
    args = parser.parse_args(argv)

    from dmic_core.datasets.seeds import selection_seeds

    try:
        seeds = selection_seeds(args.seeds)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    start = time.perf_counter()
    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            parts = list(pool.map(clip_outcomes, seeds, [args.data] * len(seeds), [args.agents] * len(seeds)))
    else:
        parts = [clip_outcomes(s, args.data, args.agents) for s in seeds]
    rows = [r for part in parts for r in part]
    table = best_qp_table(rows)
    for t in table:
        print(f"{t['reference']:>12} lambda {t['lambda']:>5g}: best QP_I {t['best_qp_i']}  "
              f"mean reward {t['mean_reward']}  wins {t['wins']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/frame_qp_ceiling.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "volumes_role": "validation", "agents": args.agents, "qp_i": list(QP_IS),
        "offsets_decided_at_lambda": 100.0, "seconds": round(time.perf_counter() - start, 1),
        "best": table, "outcomes": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
