"""Fit the surrogate's missing mixed-QP rate on training clips, check it on validation clips (issue 13).

The surrogate (:class:`~dmic_core.agents.env.ClipCache`) prices each CTU from a uniform encode at
that CTU's QP, so it cannot see what a real encode spends where the QP changes between
neighbouring CTUs. In the extended action space that cost is large: at background +20 the
surrogate charges half the real bits (docs/agents.md). This script fits a two-part model of
the missing rate,

    bits_real ~= bits_surrogate(rate cap Q) + kappa * 2^(-(QP_I - 32) / c) * edge_steps

* a rate saturation: a CTU coded coarser than paper QP ``Q`` (I-frame equivalent) is priced as
  at ``Q`` (``ClipCache.rate_qp_cap``; real mixed encodes stop saving bits there);
* an edge term (``edge_steps``: :func:`~dmic_core.agents.env.offset_edge_steps`, the summed
  offset difference across adjacent CTUs; ``kappa`` bits per offset step at QP_I 32, doubling
  every ``c`` QPs finer),

``kappa`` by least squares on the *relative* error and ``Q``, ``c`` by grid, all on the rows of
``bench/surrogate_error.py`` run on the training clips; it then reports the error before and
after on the validation clips' rows, which chose nothing.

Usage::

    python bench/surrogate_rate_fit.py --train bench/results/surrogate_error_extended_train.json \\
        --val bench/results/surrogate_error_extended.json

Prints the table and writes ``bench/results/surrogate_rate_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: Candidate halving distances ``c`` of the per-step cost (QPs); inf = no QP dependence.
HALVING = (4.0, 6.0, 8.0, 12.0, float("inf"))
#: Candidate rate caps (None: none); the rows carry ``bits_sur_cap<Q>`` for each.
CAPS = (None, 40, 42, 44, 46, 48, 50)


def _base(r: dict, cap: int | None) -> float:
    return float(r["bits_sur"] if cap is None else r[f"bits_sur_cap{cap}"])


def _load(path: Path) -> list[dict]:
    rows = json.loads(path.read_text())["rows"]
    missing = [r["decision"] for r in rows if "edge_steps" not in r or any(
        f"bits_sur_cap{cap}" not in r for cap in CAPS if cap is not None)]
    if missing:
        raise SystemExit(f"{path}: rows without edge_steps (re-run bench/surrogate_error.py): {missing[:3]}")
    return rows


def feature(rows: list[dict], c: float) -> np.ndarray:
    q = np.array([r["qp_i"] for r in rows], float)
    return np.array([r["edge_steps"] for r in rows], float) * 2.0 ** (-(q - 32.0) / c)


def fit(rows: list[dict], c: float, cap: int | None = None) -> float:
    """``kappa`` (>= 0) minimising the squared relative error of the corrected bits on ``rows``."""
    real = np.array([r["bits_real"] for r in rows], float)
    sur = np.array([_base(r, cap) for r in rows], float)
    x = feature(rows, c) / real
    return max(0.0, float(np.dot(x, (real - sur) / real) / max(np.dot(x, x), 1e-30)))


def errors(rows: list[dict], kappa: float, c: float, cap: int | None = None) -> dict[str, float]:
    real = np.array([r["bits_real"] for r in rows], float)
    pred = np.array([_base(r, cap) for r in rows], float) + kappa * feature(rows, c)
    e = (pred - real) / real
    return {"mean": float(e.mean()), "mean_abs": float(np.abs(e).mean()), "max_abs": float(np.abs(e).max())}


def by_decision(rows: list[dict], kappa: float, c: float, cap: int | None) -> dict[str, dict[str, float]]:
    """Mean relative bits error per decision family (clips pooled), before and after."""
    out: dict[str, list[tuple[float, float]]] = {}
    after = np.array([_base(r, cap) for r in rows], float) + kappa * feature(rows, c)
    for r, a in zip(rows, after):
        out.setdefault(r["decision"], []).append(((r["bits_sur"] - r["bits_real"]) / r["bits_real"],
                                                  (a - r["bits_real"]) / r["bits_real"]))
    return {k: {"surrogate": float(np.mean([x for x, _ in v])), "corrected": float(np.mean([y for _, y in v])),
                "clips": len(v)} for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="surrogate_error.py rows of training clips")
    parser.add_argument("--val", type=Path, required=True, help="surrogate_error.py rows of validation clips")
    parser.add_argument("--out", type=Path, default=RESULTS / "surrogate_rate_fit.json")
    args = parser.parse_args(argv)
    train, val = _load(args.train), _load(args.val)
    if {r["clip"] for r in train} & {r["clip"] for r in val}:
        raise SystemExit("the training and validation rows share clips")
    fits = []
    for cap in CAPS:
        for c in HALVING:
            kappa = fit(train, c, cap)
            fits.append({"cap": cap, "c": c, "kappa": kappa, "train": errors(train, kappa, c, cap)})  # c = inf: Infinity in the JSON
    best = min(fits, key=lambda f: f["train"]["mean_abs"])  # chosen on the training rows only
    cap, c, kappa = best["cap"], best["c"], best["kappa"]
    report = {
        "command": "python bench/surrogate_rate_fit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "train_clips": sorted({r["clip"] for r in train}), "val_clips": sorted({r["clip"] for r in val}),
        "fits": fits, "chosen": {"cap": cap, "c": c, "kappa": kappa},
        "train": {"surrogate": errors(train, 0.0, c), "corrected": errors(train, kappa, c, cap)},
        "val": {"surrogate": errors(val, 0.0, c), "corrected": errors(val, kappa, c, cap)},
        "val_by_decision": by_decision(val, kappa, c, cap), "train_by_decision": by_decision(train, kappa, c, cap),
    }
    print(f"{'cap':>5s} {'c':>5s} {'kappa':>7s} {'train mean|e|':>13s} {'max|e|':>7s}")
    for f in fits:
        print(f"{str(f['cap']):>5s} {f['c']:5g} {f['kappa']:7.2f} {f['train']['mean_abs']:13.3f} {f['train']['max_abs']:7.3f}")
    print(f"\nchosen on training rows: rate cap {cap}, c = {c:g}, kappa = {kappa:.2f} bits per offset step at QP_I 32")
    for split in ("train", "val"):
        b, a = report[split]["surrogate"], report[split]["corrected"]
        print(f"{split:5s} ({len(train if split == 'train' else val)} rows): bits error mean {b['mean']:+.3f} -> {a['mean']:+.3f}, "
              f"mean abs {b['mean_abs']:.3f} -> {a['mean_abs']:.3f}, max abs {b['max_abs']:.3f} -> {a['max_abs']:.3f}")
    print(f"\n{'validation decision':22s} {'surrogate':>9s} {'corrected':>9s}")
    for name, v in report["val_by_decision"].items():
        print(f"{name:22s} {v['surrogate']:+9.3f} {v['corrected']:+9.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
