"""Shipping check: the best ablation checkpoint (full, 1 shot, 500 it) on every test volume + the real CT."""
import json, sys
import pandas as pd
from pathlib import Path
from dmic_core.experiments.core import (ExperimentConfig, Curve, RunSpec, checkpoint_path, evaluate_case, test_cases,
                                        bd_rows, pretrained_path)
def main():
    args = json.loads(sys.argv[1])
    cfg = ExperimentConfig(**args)
    curves = lambda: [Curve("hevc", "hevc", tuple(cfg.qps)),
                      Curve("pretrained", "dmic", tuple(cfg.lambdas), str(pretrained_path(cfg))),
                      Curve("dmic:a2c-k1-it1000", "dmic", tuple(cfg.lambdas), str(checkpoint_path(cfg, RunSpec("a2c", 1, 1000)))),
                      Curve("dmic:full-k1-it500", "dmic", tuple(cfg.lambdas), str(checkpoint_path(cfg, RunSpec("full", 1, 500))))]
    frames = []
    for case in test_cases(cfg):
        f = evaluate_case(case, curves(), cfg)
        frames.append(f.assign(domain="real" if case.domain == "real" else "target"))
    p = pd.concat(frames, ignore_index=True)
    out = {}
    for dom, g in p.groupby("domain"):
        out[dom] = bd_rows(g, ["pretrained", "dmic:a2c-k1-it1000", "dmic:full-k1-it500"]).to_dict(orient="records")
    p.to_csv(Path(__file__).with_name("ship_points.csv"), index=False)
    print(json.dumps(out, indent=1, default=float))


if __name__ == '__main__':
    main()
