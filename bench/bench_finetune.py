"""Few-shot tuning speed: 1-shot, 1000 iterations, strategy a2c, on 2 CPU cores (target: <= 30 min).

Measures the whole ``dmic finetune`` run on a held-out phantom: the surrogate caches from real
encodes (built once per training clip, in ``--workers`` processes, then reused from disk by every
later run on the same volume) and the A2C iterations. Writes a JSON report.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_finetune.py --data work_dirs/experiments/target_phantoms \
        --out bench/results/finetune.json [--fresh-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 30 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="labelled ImageCAS-layout folder (e.g. `dmic phantom` output)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune.json"))
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--strategy", default="a2c")
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--clips-per-volume", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh-cache", action="store_true", help="build the surrogate caches from scratch (timed)")
    args = ap.parse_args()

    import torch

    from dmic_core.finetune import FinetuneConfig, finetune
    from dmic_core.finetune.config import DEFAULT_CACHE_DIR

    cache_dir = Path(tempfile.mkdtemp(prefix="ftcache-")) if args.fresh_cache else DEFAULT_CACHE_DIR
    work = Path(tempfile.mkdtemp(prefix="ftbench-"))
    cfg = FinetuneConfig(data=args.data, shots=args.shots, strategy=args.strategy, iterations=args.iterations,
                         clips_per_volume=args.clips_per_volume, workers=args.workers, threads=args.threads,
                         cache_dir=str(cache_dir))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = finetune(cfg, work / "agents.pt", log=lambda m: print(m, flush=True))
    wall = time.perf_counter() - t0
    report = {
        "what": f"{args.shots}-shot {args.strategy}, {args.iterations} iterations (dmic finetune)",
        "wall_s": round(wall, 1), "target_s": TARGET_S, "within_target": wall <= TARGET_S,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "caches_fresh": bool(args.fresh_cache), "trainable_parameters": result.trainable_parameters,
        "main_process_cpu_s": round(time.process_time() - cpu0, 1),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "load_avg_at_end": os.getloadavg()},
        "config": {"clip_frames": cfg.clip_frames, "clips_per_volume": cfg.clips_per_volume, "preset": cfg.preset,
                   "workers": cfg.workers},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    if args.fresh_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
