"""Agent decision time (frame + CTU agents) for a 33-frame 512x512 clip, and parameter counts.

Decision = states from the slices and mask (``features``), the frame agent's QP_I
(``frame_agent``) and every CTU's offset in one batch (``ctu_agent``); target <= 0.3 s on
2 CPU cores (paper: 0.92 s for its agents on a GPU). Uses a synthetic CCTA phantom (seed 5950,
outside every training range) and its coronary label as the mask. Reports the minimum and the
median over ``--repeats`` runs after one warm-up (the minimum is the machine's speed; the
median shows contention from other processes).

Usage::

    python bench/bench_agents.py [--threads 2] [--frames 33] [--repeats 10]
                                 [--checkpoint assets/agents_pretrained.pt] [--out bench/results/agents.json]
    python bench/bench_agents.py --real-eval --checkpoint assets/agents_pretrained.pt \
                                 --out bench/results/agents_real_eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--checkpoint", default=None, help="agents checkpoint (default: untrained weights)")
    parser.add_argument("--space", default="paper", choices=["paper", "extended"])
    parser.add_argument("--out", type=Path, default=RESULTS / "agents.json")
    parser.add_argument("--real-eval", action="store_true",
                        help="instead: real-encode check of --checkpoint vs untrained agents and the best "
                             "two-level map on held-out source clips (writes --out)")
    args = parser.parse_args(argv)
    if args.real_eval:
        return real_eval(args)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # OpenMP's default busy-waiting makes 2 threads ~100x slower when other processes share the
    # cores; passive waiting costs nothing when they do not.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.policies import count_parameters
    from dmic_core.datasets.phantom import generate_phantom

    vol, label = generate_phantom(5950, n_slices=args.frames, size=args.size)
    agents = DMICAgents.load(args.checkpoint) if args.checkpoint else DMICAgents(args.space)
    agents.eval()
    agents.decide(vol.hu, label, 10.0)  # warm-up
    runs = []
    for i in range(args.repeats):
        d = agents.decide(vol.hu, label, [0.0, 1.0, 10.0, 100.0][i % 4])
        runs.append(d.seconds)
    stages = ("features", "frame_agent", "ctu_agent", "total")
    table = {s: {"min": float(min(r[s] for r in runs)), "median": float(np.median([r[s] for r in runs]))}
             for s in stages}
    counts = {"frame": count_parameters(agents.frame), "ctu": count_parameters(agents.ctu)}
    result = {
        "name": "agents-decision-time",
        "description": f"{args.frames} frames {args.size}x{args.size}, {args.threads} threads, "
                       f"{d.offsets.size} CTUs in one batch",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_avg_1min": os.getloadavg()[0]},
        "checkpoint": args.checkpoint, "space": agents.space.name,
        "seconds": table, "target_seconds": 0.3, "meets_target": table["total"]["min"] <= 0.3,
        "parameters": counts,
    }
    print(f"{'stage':<12} {'min s':>8} {'median s':>9}")
    for s in stages:
        print(f"{s:<12} {table[s]['min']:>8.3f} {table[s]['median']:>9.3f}")
    verdict = "met" if result["meets_target"] else "NOT met"
    print(f"target 0.3 s: {verdict} (load avg {os.getloadavg()[0]:.1f})")
    for name, c in counts.items():
        print(f"{name:<6} " + "  ".join(f"{k} {v:,}" for k, v in c.items() if k != "trainable"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def real_eval(args) -> int:
    """Real x265 encodes of held-out source clips (seeds 5900/5901, 256 crops, 9 frames)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.source_task import LumenThresholdSegmenter
    from dmic_core.agents.train import SOURCE_HELDOUT_SEEDS, evaluate_real, source_clip, two_level_real

    lambdas = (0.0, 1.0, 10.0, 100.0)
    seg = LumenThresholdSegmenter()
    pre = DMICAgents.load(args.checkpoint)
    torch.manual_seed(0)
    init = DMICAgents(pre.space)
    rows = []
    for seed in SOURCE_HELDOUT_SEEDS:
        vol, _ = source_clip(seed, 9, 512, 256)
        for name, agents in (("pretrained", pre), ("untrained", init)):
            for r in evaluate_real(agents, vol, seg, lambdas):
                rows.append({"clip": seed, "method": name, **r})
        for lam, r in two_level_real(vol, seg, lambdas, space=pre.space.name).items():
            rows.append({"clip": seed, "method": "best-two-level", **r})
    print(f"{'method':<16} {'lambda':>6} {'QP_I':>5} {'rate':>6} {'drop':>7} {'reward':>7}")
    for m in ("pretrained", "untrained", "best-two-level"):
        for lam in lambdas:
            sel = [r for r in rows if r["method"] == m and r["lam"] == lam]
            print(f"{m:<16} {lam:>6.0f} {np.mean([r['qp_i'] for r in sel]):>5.1f} "
                  f"{np.mean([r['rate'] for r in sel]):>6.3f} {np.mean([r['drop'] for r in sel]):>7.4f} "
                  f"{np.mean([r['reward'] for r in sel]):>7.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"name": "agents-real-eval-source", "checkpoint": args.checkpoint,
                                    "rows": rows}, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
