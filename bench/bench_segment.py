"""Inference time and peak memory of a segmenter on CPU.

Times ``segment()`` on a 33 x 512 x 512 slab and on a whole ImageCAS-sized volume
(default 275 x 512 x 512) of phantom-like data, best of ``--repeat`` runs, and reports the peak
resident memory of the process (``ru_maxrss``, input volume included) and the model size. CPU
seconds are reported next to wall seconds: on a shared machine wall time depends on the other
load, while single-thread CPU time is what the model costs.

Usage::

    python bench/bench_segment.py [--model builtin] [--threads N] [--frames 275] [--repeat 3]

Prints JSON and writes ``bench/results/bench_segment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), else peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _volume(frames: int, seed: int = 3000):
    """Phantom frames when the generator is there (tiled to ``frames``), else noise."""
    from dmic_core.io.orientation import canonical_volume

    try:
        from dmic_core.segmentation.train import phantom_volume

        lv = phantom_volume(seed)
        hu = np.asarray(lv.hu)
        idx = np.arange(frames) % hu.shape[0]
        return canonical_volume(hu[idx], lv.spacing)
    except ImportError:
        rng = np.random.default_rng(0)
        return canonical_volume(rng.integers(-1000, 1000, (frames, 512, 512)).astype(np.int16), (0.5, 0.4, 0.4))


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation._inference import available_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--frames", type=int, default=275, help="frames of the whole-volume run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_segment.json")
    args = parser.parse_args(argv)

    kwargs = {} if args.threads is None else {"threads": args.threads}
    seg = load_segmenter(args.model, **kwargs)
    slab = _volume(33)
    whole = _volume(args.frames)
    seg.segment(slab.slab(0, 4))  # warm-up
    out: dict = {"model": seg.name, "threads": args.threads or available_cores(),
                 "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                 "load_avg_1min": os.getloadavg()[0]}
    if hasattr(seg, "net"):
        out["parameters"] = int(sum(p.numel() for p in seg.net.parameters()))
    weights = getattr(seg, "weights_path", None)
    if weights:
        out["weights_bytes"] = Path(weights).stat().st_size
    for name, vol in (("slab_33x512x512", slab), (f"volume_{args.frames}x512x512", whole)):
        times, cpu = [], []
        base = _rss_mb()
        for _ in range(args.repeat if name.startswith("slab") else 1):
            t, c = time.perf_counter(), time.process_time()
            mask = seg.segment(vol)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out[name] = {"seconds_best": round(min(times), 3), "seconds_all": [round(t, 3) for t in times],
                     "cpu_seconds_best": round(min(cpu), 3),
                     "ms_per_frame": round(1000 * min(times) / vol.n_frames, 1),
                     "mask_fraction": float(mask.mean()),
                     "rss_before_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
                     "input_mb": round(vol.hu.nbytes / 2**20, 1)}
    out["load_avg_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
