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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
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
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.policies import count_parameters
    from dmic_core.data.phantom import generate_phantom

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
    print(f"target 0.3 s: {'met' if result['meets_target'] else 'NOT met'} (load avg {os.getloadavg()[0]:.1f})")
    for name, c in counts.items():
        print(f"{name:<6} " + "  ".join(f"{k} {v:,}" for k, v in c.items() if k != "trainable"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
