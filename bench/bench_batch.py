"""Tasks per second of ``dmic batch``: local worker processes vs Ray (local runtime), same tasks.

Every configuration runs the same dataset and rate points into a fresh folder (real encodes,
``gt`` scoring so the numbers measure the job system and the codec, not the U-Net), and reports:

* ``wall_s`` / ``tasks_per_s``: the whole command as a person sees it (runtime start included);
* ``steady_tasks_per_s``: tasks over the span from the first task start to the last finish,
  read from the store's timestamps (Ray's start-up excluded);
* ``mean_task_s``: mean task duration inside the worker.

Usage: ``python bench/bench_batch.py [--volumes 4 --size 256 --slices 32 --configs local:1,local:2,ray:2]``
Prints a table and writes ``bench/results/batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmic_core.batch import BatchConfig, run_batch  # noqa: E402
from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair  # noqa: E402
from dmic_core.jobs import JobStore  # noqa: E402


def make_dataset(folder: Path, volumes: int, size: int, slices: int) -> Path:
    for i in range(1, volumes + 1):
        volume, label = generate_phantom(i, slices, size=size)
        write_imagecas_pair(volume, label, folder, str(i))
    return folder


def run_config(dataset: Path, work: Path, executor: str, workers: int, config: BatchConfig) -> dict:
    out = work / f"{executor}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_batch(dataset, out, config, executor=executor, workers=workers, progress=False)
    wall = time.perf_counter() - start
    tasks = JobStore(out).tasks("batch")
    done = [t for t in tasks if t["status"] == "done"]
    span = max(t["finished_at"] for t in done) - min(t["started_at"] for t in done) if done else float("nan")
    durations = [t["finished_at"] - t["started_at"] for t in done]
    return {"executor": executor, "workers": workers, "tasks": len(tasks), "done": len(done),
            "failed": result.counts["failed"], "wall_s": round(wall, 2), "tasks_per_s": round(len(done) / wall, 3),
            "steady_s": round(span, 2), "steady_tasks_per_s": round(len(done) / span, 3),
            "mean_task_s": round(sum(durations) / len(durations), 3)}


def summarize(rows: list[dict]) -> list[dict]:
    """Median of each measure per (executor, workers), in first-seen order."""
    import statistics

    keys = list(dict.fromkeys((r["executor"], r["workers"]) for r in rows))
    out = []
    for executor, workers in keys:
        runs = [r for r in rows if (r["executor"], r["workers"]) == (executor, workers)]
        med = {k: round(statistics.median(r[k] for r in runs), 3)
               for k in ("wall_s", "tasks_per_s", "steady_tasks_per_s", "mean_task_s")}
        out.append({"executor": executor, "workers": workers, "runs": len(runs), "done": runs[0]["done"], **med})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--methods", default="hevc,linear")
    parser.add_argument("--qps", default="22,27,32,37")
    parser.add_argument("--configs", default="local:1,local:2,ray:2", help="executor:workers, comma list")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the configs (interleaved; medians reported)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch.json")
    args = parser.parse_args(argv)
    config = BatchConfig(methods=tuple(args.methods.split(",")), qps=tuple(float(q) for q in args.qps.split(",")),
                         segmenter="gt")
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dmic-bench-batch-") as tmp:
        dataset = make_dataset(Path(tmp) / "data", args.volumes, args.size, args.slices)
        for round_ in range(args.repeat):
            for item in args.configs.split(","):
                executor, workers = item.split(":")
                row = run_config(dataset, Path(tmp), executor, int(workers), config)
                row["round"] = round_
                rows.append(row)
                print(f"  round {round_}: {executor}:{workers} done in {row['wall_s']} s", file=sys.stderr)
    load_after = os.getloadavg()
    summary = summarize(rows)
    header = f"{'executor':<8} {'workers':>7} {'runs':>4} {'tasks':>5} {'wall s':>7} {'tasks/s':>8} {'steady tasks/s':>14} {'task s':>7}"
    print(header)
    print("-" * len(header))
    for r in summary:
        print(f"{r['executor']:<8} {r['workers']:>7} {r['runs']:>4} {r['done']:>5} {r['wall_s']:>7.2f} "
              f"{r['tasks_per_s']:>8.3f} {r['steady_tasks_per_s']:>14.3f} {r['mean_task_s']:>7.3f}")
    print(f"(medians; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)")
    payload = {"dataset": {"volumes": args.volumes, "size": args.size, "slices": args.slices, "kind": "phantom"},
               "methods": config.methods, "qps": config.qps, "segmenter": "gt", "cpus": os.cpu_count(),
               "machine": platform.machine(), "python": platform.python_version(),
               "load_average_before": round(load_before[0], 2), "load_average_after": round(load_after[0], 2),
               "median": summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(payload, indent=1) + "\n")
    tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
