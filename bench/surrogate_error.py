"""How far is the agents' training surrogate from the real encoder at the evaluation settings?

The agents train on :class:`~dmic_core.agents.env.ClipCache` surrogates: per-CTU mosaics of real
uniform encodes. This script takes the surrogates of a training run's *validation* clips (built
with the evaluation encoder: x265 task coding, ``slow``, 33-frame heart slabs), codes a set of
mixed decisions for real (encode, decode, U-Net, score against the label) and compares:

* bits (relative error), mIoU (absolute error), reward ``-(R + lambda D)`` at several lambdas;
* the *ranking* of the decisions by reward (Spearman), which is what the agents' argmax needs.

Decisions per clip: two-level maps (foreground 0, background +8) at four QP_I, the five
hand-crafted maps at one QP_I, and two random valid decisions; with ``--agents``, also the
agents' greedy decisions at three lambdas. With ``--space extended`` (surrogates built for the
extended action space) the two-level maps also take the backgrounds only that space has (+12 at
four QP_I, +16 and +20 at two) and the random decisions are drawn from it: whether the
surrogate can be trusted where the extended-space training diverged (docs/agents.md).

Usage::

    python bench/surrogate_error.py --data work_dirs/agents_train/phantoms \\
        --cases phantom-6003,phantom-6021,phantom-6008 [--agents assets/agents_dmic.pt]
    python bench/surrogate_error.py --data work_dirs/agents_train/phantoms --cases phantom-6003,phantom-6021 \
        --space extended --agents assets/agents_extended.pt --out bench/results/surrogate_error_extended.json

Prints a table and writes ``bench/results/surrogate_error.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REWARD_LAMBDAS = (0.0, 10.0, 100.0)
#: Rate saturation QPs (``ClipCache.rate_qp_cap``) whose surrogate bits every row records, so
#: bench/surrogate_rate_fit.py can choose one without re-encoding.
RATE_CAPS = (40, 42, 44, 46, 48, 50)


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ImageCAS-layout folder of the training run")
    parser.add_argument("--cases", required=True, help="comma list of case ids (the run's validation volumes)")
    parser.add_argument("--agents", default=None, help="also score this checkpoint's greedy decisions")
    parser.add_argument("--clip-frames", type=int, default=33)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random decisions")
    parser.add_argument("--space", default="paper", choices=["paper", "extended"],
                        help="action space of the surrogates (and of the decisions)")
    parser.add_argument("--out", type=Path, default=RESULTS / "surrogate_error.json")
    args = parser.parse_args(argv)

    from dmic_core.agents.env import offset_edge_steps, random_decision, surrogate_error
    from dmic_core.agents.handcrafted import HANDCRAFTED, handcrafted_offsets
    from dmic_core.agents.spaces import get_space
    from dmic_core.evaluation import make_reference
    from dmic_core.finetune.caches import clip_specs, load_clips
    from dmic_core.finetune.config import FinetuneConfig
    from dmic_core.finetune.data import Split
    from dmic_core.io import load_label, load_volume
    from dmic_core.maps import foreground_ctus, mask_ctu_dqp
    from dmic_core.segmentation import load_segmenter

    data = Path(args.data)
    ids = [c for c in args.cases.split(",") if c]
    cases = {c: (str(data / f"{c}.img.nii.gz"), str(data / f"{c}.label.nii.gz")) for c in ids}
    space = get_space(args.space)
    cfg = FinetuneConfig(data=str(data), clip_frames=args.clip_frames, clips_per_volume=1, preset=None, space=space.name)
    split = Split(0, len(ids), tuple(ids), (), (), len(ids))
    specs = clip_specs(cfg, split, cases)
    missing = [s.cache_path for s in specs if not Path(s.cache_path).is_file()]
    if missing:
        raise SystemExit(f"surrogate caches missing (build them with dmic finetune first): {missing}")
    clips = load_clips(specs, cfg)
    seg = load_segmenter("builtin")
    agents = None
    if args.agents:
        from dmic_core.agents.inference import load_agents

        agents = load_agents(args.agents)
    rng = np.random.default_rng(args.seed)
    rows, per_clip = [], []
    t0 = time.perf_counter()
    for spec, clip in zip(specs, clips):
        volume = load_volume(spec.image).slab(spec.start, spec.stop)
        label = (load_label(spec.label, like=load_volume(spec.image)) > 0)[spec.start:spec.stop].astype(np.uint8)
        reference = make_reference(seg, volume, label)
        roi = reference.roi
        fg = foreground_ctus(roi)
        decisions: list[tuple[str, int, np.ndarray]] = [
            (f"two-level@{q}", q, mask_ctu_dqp(roi, 0, 8)) for q in (20, 26, 32, 37)]
        if space.name != "paper":
            decisions += [(f"two-level+12@{q}", q, mask_ctu_dqp(roi, 0, 12)) for q in (20, 26, 32, 37)]
            decisions += [(f"two-level+{bg}@{q}", q, mask_ctu_dqp(roi, 0, bg)) for bg in (16, 20) for q in (26, 32)]
        decisions += [(f"{m}@29", 29, handcrafted_offsets(roi, m)) for m in HANDCRAFTED]
        decisions += [(f"random{i}", *random_decision(space, fg, rng)) for i in range(2)]
        if agents is not None:
            for lam in (0.0, 10.0, 100.0):
                d = agents.decide(volume.hu, roi, lam)
                decisions.append((f"agents@lambda{lam:g}", int(d.qp_i), d.offsets))
        found = surrogate_error(volume, seg, reference, clip.cache, [(q, o) for _, q, o in decisions], lam=10.0,
                                space=space)
        clip_rows = []
        for (name, _, offsets), row in zip(decisions, found):
            for lam in REWARD_LAMBDAS:
                row[f"reward_real_l{lam:g}"] = -(row["bits_real"] / clip.cache.bits_ref
                                                 + lam * (clip.cache.original_miou - row["miou_real"]))
                sur = clip.cache.evaluate(row["qp_i"], offsets, lam)
                row[f"reward_sur_l{lam:g}"] = sur.reward
            capped = {f"bits_sur_cap{cap}": dataclasses.replace(clip.cache, rate_qp_cap=cap).evaluate(
                row["qp_i"], offsets, 10.0).bits for cap in (RATE_CAPS if space.name != "paper" else ())}
            clip_rows.append({"clip": spec.name, "decision": name, **row, "edge_steps": offset_edge_steps(offsets),
                              "bits_ref": clip.cache.bits_ref, **capped})
        rho = {f"{lam:g}": _spearman([r[f"reward_real_l{lam:g}"] for r in clip_rows],
                                     [r[f"reward_sur_l{lam:g}"] for r in clip_rows]) for lam in REWARD_LAMBDAS}
        per_clip.append({"clip": spec.name, "spearman_reward": rho})
        rows += clip_rows
        print(f"{spec.name}: {len(clip_rows)} decisions, Spearman by lambda {rho}", flush=True)
    bits = np.array([r["bits_rel_err"] for r in rows])
    miou = np.array([r["miou_err"] for r in rows])
    summary = {
        "decisions": len(rows),
        "bits_rel_err_mean_abs": float(np.mean(np.abs(bits))), "bits_rel_err_max_abs": float(np.max(np.abs(bits))),
        "bits_rel_err_mean": float(np.mean(bits)),
        "miou_err_mean_abs": float(np.mean(np.abs(miou))), "miou_err_max_abs": float(np.max(np.abs(miou))),
        "spearman_reward_mean": {f"{lam:g}": float(np.nanmean([c["spearman_reward"][f"{lam:g}"] for c in per_clip]))
                                 for lam in REWARD_LAMBDAS},
        "seconds": time.perf_counter() - t0,
    }
    print(f"{'clip':28s} {'decision':22s} {'bits err':>9s} {'mIoU real':>9s} {'mIoU sur':>9s}")
    for r in rows:
        print(f"{r['clip']:28s} {r['decision']:22s} {r['bits_rel_err']:+9.2%} {r['miou_real']:9.4f} {r['miou_sur']:9.4f}")
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/surrogate_error.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "setup": f"x265 task coding (evaluation encoder), builtin U-Net, labels as reference, {space.name} space",
        "summary": summary, "per_clip": per_clip, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
