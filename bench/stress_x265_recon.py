"""Long stress run of the x265 backend: reconstruction == decode, and reproducible streams.

Runs ``--encodes`` cases of :mod:`dmic_core.codecs.stress` (varied preset, bit depth, frame
count and size, worker threads, CTU offsets; each coded twice) in ``--workers`` processes with
``--burners`` CPU-bound processes beside them, and prints a table per frame width and per
preset. Mismatching cases keep stream, reconstruction, decode and input under ``--debug``.

Usage::

    python bench/stress_x265_recon.py [--encodes 1000] [--workers 3] [--burners 2]
                                      [--debug test-artifacts/x265-stress] [--out bench/results/x265_stress.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from collections import Counter, defaultdict
from pathlib import Path

from dmic_core.codecs import stress

RESULTS = Path(__file__).resolve().parent / "results"


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encodes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=100_000)
    parser.add_argument("--debug", default="test-artifacts/x265-stress")
    parser.add_argument("--out", type=Path, default=RESULTS / "x265_stress.json")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    burners = [ctx.Process(target=_burn, args=(time.time() + 36_000,), daemon=True)
               for _ in range(args.burners)]
    for b in burners:
        b.start()
    start = time.perf_counter()
    by_width: dict[int, Counter] = defaultdict(Counter)
    by_preset: dict[str, Counter] = defaultdict(Counter)
    failures = []
    seeds = range(args.first_seed, args.first_seed + args.encodes)
    try:
        for k, out in enumerate(stress.run_stress(seeds, workers=args.workers,
                                                  debug_root=args.debug), 1):
            for table, key in ((by_width, out.coded_size[1]), (by_preset, out.case.preset)):
                table[key]["cases"] += 1
                table[key]["recon_mismatch"] += int(out.recon_matches is False)
                table[key]["unverifiable"] += int(out.recon_matches is None and out.error is None)
                table[key]["nondeterministic"] += int(out.deterministic is False)
                table[key]["errors"] += int(out.error is not None)
            if not out.ok:
                failures.append(stress.outcome_dict(out))
            if k % 50 == 0:
                print(f"{k}/{args.encodes} cases, {len(failures)} failing", flush=True)
    finally:
        for b in burners:
            b.terminate()
    seconds = time.perf_counter() - start

    columns = ("cases", "recon_mismatch", "nondeterministic", "unverifiable", "errors")
    for title, table in (("coded width", by_width), ("preset", by_preset)):
        print(f"\n{title:>12} " + " ".join(f"{c:>16}" for c in columns))
        for key in sorted(table, key=str):
            print(f"{key:>12} " + " ".join(f"{table[key][c]:>16}" for c in columns))
    print(f"\n{args.encodes} cases ({2 * args.encodes} encodes), {len(failures)} failing, "
          f"{seconds:.0f} s, {args.workers} workers + {args.burners} CPU burners")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/stress_x265_recon.py " + " ".join(argv or []),
        "encodes": args.encodes, "workers": args.workers, "burners": args.burners,
        "seconds": round(seconds, 1), "cpus": mp.cpu_count(), "python": platform.python_version(),
        "by_coded_width": {str(k): dict(v) for k, v in sorted(by_width.items())},
        "by_preset": {k: dict(v) for k, v in by_preset.items()},
        "failures": failures[:50],
    }, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
