"""Adapt the extended-space agents to the target task: 1 labelled phantom, A2C heads only.

    python docs/results/extended/finetune_extended.py --from work_dirs/extended/agents_extended_pretrained.pt \
        --out work_dirs/extended/agents_extended.pt [--seed 7100] [--iterations 400]

Target task = coronary lumen by the builtin U-Net, scored against the phantom's label. One
labelled phantom (seed 7100: outside the segmenter's 1000-3009, the source domain's 5001-5012 and
5900-5901, the sweeps' held-out 7001-7003 and issue 5's 9100+). Training clips: 9-slice slabs at
two heights around the label's median slice, each cropped to the CTU-aligned 256 x 256 window
holding the most label (the pretraining clips' shape); surrogate caches (ClipCache, x265 preset
veryfast like the pretraining caches) built with the U-Net and the label. A2CTrainer with strategy
``a2c`` (only the actor/critic heads train), the paper's learning rates (1e-3 frame, 1e-4 CTU).
Re-running resumes (``OUT.state``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="src", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=7100)
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--data", type=Path, default=ROOT / "work_dirs" / "extended" / "target")
    args = p.parse_args(argv)

    import torch

    from dmic_core.agents.a2c import A2CConfig, A2CTrainer
    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.agents.train import build_clip
    from dmic_core.cli import main as cli
    from dmic_core.io import load_label, load_volume
    from dmic_core.pipeline import TASK_CODING, CodingSetup
    from dmic_core.segmentation import load_segmenter
    from dmic_core.volume import Volume

    torch.set_num_threads(1)
    image = args.data / f"phantom-{args.seed}.img.nii.gz"
    if not image.is_file():
        assert cli(["phantom", "--seed", str(args.seed), "--out", str(args.data)]) == 0
    vol = load_volume(image)
    label = load_label(args.data / f"phantom-{args.seed}.label.nii.gz", like=vol)
    per = (label > 0).sum(axis=(1, 2))
    mid = int(np.searchsorted(np.cumsum(per) / per.sum(), 0.5))
    seg = load_segmenter("builtin")
    setup = CodingSetup(codec=TASK_CODING.codec, preset=args.preset, bit_depth=TASK_CODING.bit_depth,
                        window=TASK_CODING.window)
    agents = DMICAgents.load(args.src)
    clips = []
    for k, z0 in enumerate((mid - 12, mid + 3)):
        z0 = int(np.clip(z0, 0, vol.n_frames - 9))
        lab = label[z0:z0 + 9]
        sums = np.add.reduceat(np.add.reduceat((lab > 0).sum(0), np.arange(0, 512, 64), 0), np.arange(0, 512, 64), 1)
        best = max(((y, x) for y in range(5) for x in range(5)),
                   key=lambda t: sums[t[0]:t[0] + 4, t[1]:t[1] + 4].sum())
        y0, x0 = best[0] * 64, best[1] * 64
        hu = np.ascontiguousarray(vol.hu[z0:z0 + 9, y0:y0 + 256, x0:x0 + 256])
        sub = Volume(hu, vol.spacing, vol.affine.copy(), hu.shape, vol.to_canonical.copy(), dict(vol.source),
                     {**vol.meta, "crop": {"z0": z0, "y0": y0, "x0": x0, "size": 256}})
        t0 = time.perf_counter()
        cache = args.data / f"cache-{args.seed}-{z0}-{y0}-{x0}-{agents.space.name}-{args.preset}.npz"
        clips.append(build_clip(sub, seg, label=np.ascontiguousarray(lab[:, y0:y0 + 256, x0:x0 + 256]),
                                space=agents.space.name, setup=setup, cache_path=cache,
                                name=f"target-{args.seed}-{z0}"))
        print(f"[finetune-ext] clip {k}: slices {z0}:{z0 + 9} crop y{y0} x{x0}, "
              f"{int((lab[:, y0:y0 + 256, x0:x0 + 256] > 0).sum())} label voxels, "
              f"cache in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    # reload: the source checkpoint may have been finished while the caches were being built
    while Path(str(args.src) + ".state").is_file() and DMICAgents.load(args.src).meta.get("iteration", 0) < \
            DMICAgents.load(args.src).meta.get("config", {}).get("iterations", 0):
        print("[finetune-ext] waiting for the source checkpoint to finish", file=sys.stderr, flush=True)
        time.sleep(30)
    agents = DMICAgents.load(args.src)
    print(f"[finetune-ext] from {args.src} (iteration {agents.meta.get('iteration')})", file=sys.stderr, flush=True)
    cfg = A2CConfig(iterations=args.iterations, batch_clips=args.batch, lr_frame=1e-3, lr_ctu=1e-4,
                    entropy_coef_frame=0.01, entropy_coef_ctu=0.01, ctu_grad_samples=256, strategy="a2c",
                    seed=0, threads=1, checkpoint_every=100)
    trainer = A2CTrainer(agents, clips, cfg, args.out)
    if trainer.resume():
        print(f"[finetune-ext] resumed at {trainer.iteration}", file=sys.stderr)

    def progress(done, total, s):
        if done % 50 == 0 or done == total:
            print(f"[finetune-ext] {done}/{total} reward {s['reward']:.3f} gain {s['gain']:+.3f} "
                  f"QP_I {s['qp_i']:.1f} dQP {s['mean_offset']:.2f}"
                  + (f" | greedy reward {s['greedy_reward']:.3f} gain {s['greedy_gain']:+.3f} "
                     f"QP_I {s['greedy_qp_i']:.1f}" if "greedy_gain" in s else ""), file=sys.stderr, flush=True)

    trainer.train(progress=progress, eval_every=100)
    agents.meta.update({"finetune": {"domain": "target: coronary U-Net (builtin) on phantoms, label reference",
                                     "seed": args.seed, "shots": 1, "strategy": "a2c",
                                     "iterations": args.iterations, "clips": [c.name for c in clips],
                                     "preset": args.preset, "from": str(args.src.name)}})
    trainer.save_checkpoint()
    print(json.dumps({"out": str(args.out), "meta": agents.meta}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
