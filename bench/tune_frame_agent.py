"""Tune the default agents' frame agent on real encodes (``dmic_core.agents.frame_tuning``).

Codes, for each training and validation phantom's 33-frame heart slab, the real table of every QP_I
(with the CTU agent's own offsets; 24 encodes + segmentations per slab, cached per agents file under
``--work``, so a rerun codes only what is missing), then trains the frame agent towards each
table's best QP_I and keeps the best validation iteration among those that behave. Seeds must be
training or validation seeds (evaluation and test seeds are refused).

Usage::

    python bench/tune_frame_agent.py --data work_dirs/agents_train/phantoms \\
        --train-seeds 6017,6014,6022,6009,6025,6024,6001,6015,6008,6000,6020,6012,6018,6013,6007,6005 \\
        --val-seeds 6003,6021 --out work_dirs/frame_tune/agents_dmic_frame.pt --workers 2

Writes the checkpoint and ``bench/results/frame_tune.json`` (tables' summary, config, history).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def table_for(seed: int, data: Path, agents_path: str, work: Path):
    """The real frame table of phantom ``seed``'s heart slab (from ``work`` when coded before)."""
    import torch

    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.env import RealEnv
    from dmic_core.agents.frame_tuning import FrameTable, real_frame_table
    from dmic_core.assets import sha256
    from dmic_core.io import load_label, load_volume
    from dmic_core.protocol.volumes import phantom_volume
    from dmic_core.segmentation import load_segmenter

    torch.set_num_threads(1)
    spec = phantom_volume(seed, data)
    path = work / "tables" / f"{spec.name}-{spec.slices[0]}_{spec.slices[1]}-{sha256(Path(agents_path))[:16]}.json"
    if path.is_file():
        return FrameTable.from_dict(json.loads(path.read_text()))
    volume = load_volume(spec.image)
    label = (load_label(spec.label, like=volume) > 0).astype("uint8")
    a, b = spec.slices
    env = RealEnv(volume.slab(a, b), load_segmenter("builtin"), label[a:b])
    start = time.perf_counter()
    table = real_frame_table(env, DMICAgents.load(agents_path), name=spec.name,
                             progress=lambda k, n: print(f"  {spec.name}: {k}/{n} QP_I coded", flush=True) if k % 6 == 0 else None)
    table.meta.update({"slices": [a, b], "seconds": round(time.perf_counter() - start, 1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
    return table


def frame_clip(seed: int, data: Path, agents, table, segmenter):
    from dmic_core.agents.frame_tuning import FrameClip
    from dmic_core.io import load_volume
    from dmic_core.protocol.volumes import phantom_volume

    spec = phantom_volume(seed, data)
    a, b = spec.slices
    clip = load_volume(spec.image).slab(a, b)
    mask = segmenter.segment(clip)   # the mask RealEnv gave the agents for the table
    return FrameClip.from_volume(clip.hu, agents.region(mask), table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder for phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--train-seeds", required=True)
    parser.add_argument("--val-seeds", required=True)
    parser.add_argument("--from", dest="source", default="assets/agents_dmic.pt", help="agents to start from")
    parser.add_argument("--out", type=Path, required=True, help="tuned checkpoint")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/frame_tune"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--strategy", default="a2c")
    parser.add_argument("--json", type=Path, default=RESULTS / "frame_tune.json")
    args = parser.parse_args(argv)

    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.frame_tuning import FrameTuneConfig, tune_frame_agent
    from dmic_core.assets import sha256
    from dmic_core.datasets.seeds import selection_seeds

    try:
        train_seeds, val_seeds = selection_seeds(args.train_seeds), selection_seeds(args.val_seeds)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    if set(train_seeds) & set(val_seeds):
        raise SystemExit(f"seeds {sorted(set(train_seeds) & set(val_seeds))} are both training and validation seeds")
    start = time.perf_counter()
    seeds = train_seeds + val_seeds
    if args.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            tables = list(pool.map(table_for, seeds, [args.data] * len(seeds), [args.source] * len(seeds),
                                   [args.work] * len(seeds)))
    else:
        tables = [table_for(s, args.data, args.source, args.work) for s in seeds]
    coded = time.perf_counter() - start
    from dmic_core.segmentation import load_segmenter

    agents, segmenter = DMICAgents.load(args.source), load_segmenter("builtin")
    clips = [frame_clip(s, args.data, agents, t, segmenter) for s, t in zip(seeds, tables)]
    train, val = clips[:len(train_seeds)], clips[len(train_seeds):]
    cfg = FrameTuneConfig(iterations=args.iterations, strategy=args.strategy)

    def show(it: int, row: dict) -> None:
        print(f"iteration {it:4d}: loss {row['loss'] if row['loss'] is None else round(row['loss'], 4)}  "
              f"val reward {row['val_reward']:.4f} behaves {row['val_behaves']}  "
              f"train reward {row['train_reward']:.4f}  val QP_I {row['val_qp_i']}", flush=True)

    t0 = time.perf_counter()
    history = tune_frame_agent(agents, train, val, cfg, progress=show)
    chosen = history[-1]
    agents.save(args.out, meta={
        "frame_tuning": {"from": args.source, "from_sha256": sha256(Path(args.source)), "config": cfg.to_dict(),
                         "train": [t.name for t in tables[:len(train_seeds)]],
                         "val": [t.name for t in tables[len(train_seeds):]],
                         "chosen_iteration": chosen["chosen_iteration"],
                         "selected_on": "real-table reward of the validation slabs among behaving iterations"}})
    print(f"chosen iteration {chosen['chosen_iteration']} (val reward {chosen['val_reward']:.4f}); wrote {args.out}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "command": "python bench/tune_frame_agent.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "source": args.source, "out": str(args.out), "seconds_coding": round(coded, 1),
        "seconds_training": round(time.perf_counter() - t0, 1), "config": cfg.to_dict(),
        "tables": [t.to_dict() for t in tables], "history": history}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
