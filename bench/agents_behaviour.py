"""Do the agents behave as their reward says? Four properties per shipped checkpoint (issue 13).

1. at lambda = 0 the reward is rate alone, so the frame agent should pick the coarsest QP_I;
2. the mean coded QP should not increase as lambda grows (more weight on accuracy);
3. a foreground CTU should never be coarser than the background CTUs of its frame;
4. decisions are deterministic for a given checkpoint.

Measured on held-out phantoms from the evaluation seeds (33-slice slabs centred on the coronary
label, the segmentation of the original as the region, as at use time). A diagnostic across
every shipped checkpoint; the default agents' properties are also tests
(``tests/test_agents_behaviour.py``, on a phantom of a test seed range). Prints a table and writes
JSON.

Usage::

    python bench/agents_behaviour.py [--seeds 9000,9001,9002] [--slices 48] [--out bench/results/agents_behaviour.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from dmic_core.agents.behaviour import frames_with_foreground_coarser, lambda0_is_coarsest, mean_qp_rises
from dmic_core.agents.inference import load_agents
from dmic_core.assets import ASSETS_DIR, SHIPPED_AGENTS
from dmic_core.datasets.phantom import generate_phantom
from dmic_core.defaults import EVALUATION_LAMBDAS
from dmic_core.segmentation import load_segmenter

RESULTS = Path(__file__).resolve().parent / "results"


def slab_of(seed: int, n_slices: int):
    volume, label = generate_phantom(seed, n_slices=n_slices)
    per = (label > 0).sum(axis=(1, 2))
    mid = int(np.searchsorted(np.cumsum(per) / max(per.sum(), 1), 0.5))
    start = max(0, min(mid - 16, volume.n_frames - 33))
    return volume.slab(start, start + 33)


def check(agents, hu: np.ndarray, roi: np.ndarray) -> dict:
    decisions = {lam: agents.decide(hu, roi, lam) for lam in EVALUATION_LAMBDAS}
    coarsest = max(agents.space.qp_i)
    mean_qp = [float(decisions[lam].qp_map.mean()) for lam in EVALUATION_LAMBDAS]
    rises = mean_qp_rises(EVALUATION_LAMBDAS, mean_qp)
    inverted = frames = 0
    for d in decisions.values():
        i, n = frames_with_foreground_coarser(d.offsets, d.foreground)
        inverted, frames = inverted + i, frames + n
    again = agents.decide(hu, roi, 10.0)
    return {
        "qp_i_by_lambda": {f"{lam:g}": int(decisions[lam].qp_i) for lam in EVALUATION_LAMBDAS},
        "mean_qp_by_lambda": {f"{lam:g}": round(q, 3) for lam, q in zip(EVALUATION_LAMBDAS, mean_qp)},
        "lambda0_coarsest": lambda0_is_coarsest(decisions[0.0].qp_i, agents.space.qp_i), "coarsest_qp_i": coarsest,
        "monotone": not rises, "rises": rises,
        "fg_never_coarser": inverted == 0, "frames_with_fg_coarser_than_bg": inverted, "frames_checked": frames,
        "deterministic": bool(np.array_equal(again.offsets, decisions[10.0].offsets)
                              and again.qp_i == decisions[10.0].qp_i),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="9000,9001,9002")
    p.add_argument("--slices", type=int, default=48, help="phantom length before the 33-slice slab")
    p.add_argument("--out", type=Path, default=RESULTS / "agents_behaviour.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("DMIC_THREADS", "2")))
    segmenter = load_segmenter("builtin")
    slabs = {s: slab_of(int(s), args.slices) for s in args.seeds.split(",")}
    rois = {s: segmenter.segment(v) for s, v in slabs.items()}
    results: dict = {}
    print(f"{'checkpoint':<24} {'seed':>5} {'lam0->coarsest':>15} {'monotone':>9} {'fg<=bg':>7} {'determ.':>8}  QP_I by lambda")
    for name in SHIPPED_AGENTS:
        agents = load_agents(ASSETS_DIR / name)
        for seed, vol in slabs.items():
            r = check(agents, vol.hu, rois[seed])
            results.setdefault(name, {})[seed] = r
            print(f"{name:<24} {seed:>5} {str(r['lambda0_coarsest']):>15} {str(r['monotone']):>9} "
                  f"{str(r['fg_never_coarser']):>7} {str(r['deterministic']):>8}  "
                  + " ".join(f"{v}" for v in r["qp_i_by_lambda"].values()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python bench/agents_behaviour.py " + " ".join(argv or []),
                                    "lambdas": list(EVALUATION_LAMBDAS), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
