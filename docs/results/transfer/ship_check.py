"""Checkpoints outside the tables (the shipped agents, diagnostic runs) on every test volume + the real CT.

    python docs/results/transfer/ship_check.py '<ExperimentConfig as JSON>' \
        [NAME=CHECKPOINT ...]          # default: shipped=assets/agents_dmic.pt

Uses the experiments' point store (``WORK/points``), so the anchor and the table curves are not
encoded again; writes ``ship_points.csv`` and ``ship_check.json`` (the BD rows per domain) beside
this file and prints the JSON; progress goes to stderr.
"""
import json
import sys
from pathlib import Path

import pandas as pd

from dmic_core.evaluation.bd import bd_rows
from dmic_core.experiments.config import Curve, ExperimentConfig, RunSpec
from dmic_core.experiments.curves import evaluate_case, test_cases
from dmic_core.experiments.training import checkpoint_path, pretrained_path

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    cfg = ExperimentConfig(**json.loads(sys.argv[1]))
    extra = dict(a.split("=", 1) for a in sys.argv[2:]) or {"shipped": str(ROOT / "assets" / "agents_dmic.pt")}
    main_run = RunSpec("a2c", 1, cfg.iterations)
    curves = [Curve("hevc", "hevc", tuple(cfg.qps)),
              Curve("pretrained", "dmic", tuple(cfg.lambdas), str(pretrained_path(cfg))),
              Curve(f"dmic:{main_run.name}", "dmic", tuple(cfg.lambdas), str(checkpoint_path(cfg, main_run)))]
    curves += [Curve(name, "dmic", tuple(cfg.lambdas), path) for name, path in extra.items()]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    frames = []
    for case in test_cases(cfg, log):
        frame = evaluate_case(case, curves, cfg, log)
        frames.append(frame.assign(domain="real" if case.domain == "real" else "target"))
    points = pd.concat(frames, ignore_index=True)
    names = [c.name for c in curves[1:]]
    out = {dom: bd_rows(g, names).to_dict(orient="records") for dom, g in points.groupby("domain")}
    points.to_csv(Path(__file__).with_name("ship_points.csv"), index=False)
    text = json.dumps(out, indent=1, default=float)
    Path(__file__).with_name("ship_check.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
