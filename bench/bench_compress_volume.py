"""A whole CCTA volume through ``dmic compress``: wall time and peak memory of every stage (issue 17).

Each run is a fresh ``dmic compress IMG --method dmic --lambda 10`` *process* (start-up included,
as a person runs it). While it runs the bench samples the resident memory of its whole process
tree (the compress process's RSS, its children's PSS, e.g. libde265's decoder) every 20 ms from /proc; at
the end it takes the kernel's peak RSS of the process (``wait4`` rusage, children included) and
the stages from ``result.json``, which accounts for the whole job (start-up, read, mask, decide,
to_samples, encode, decode, codec_other, to_hu, segment, score, write). A stage's peak is the
highest tree RSS sampled during it (stages laid end to end from the process start, in that
order); ``unaccounted`` is the wall time result.json does not cover (interpreter exit). The encode
is the floor: ``whole / encode`` says how far the job is from it.

Also, with ``--sweep-slices``: a ``dmic sweep`` of one volume with 16 points (8 HEVC QPs, 8 DMIC
lambdas; sums of each stage over the points from points.csv), and with ``--job``: one app job
(the Compress page's path: a ``point`` task created in a fresh job store, claimed and run by
``jobs.tasks.execute_task``, progress to SQLite every 0.2 s), its overhead over the point's own
stages stated (job store, progress, the partial folder and its publication).

The load average (``os.getloadavg``) is printed with every figure: on a shared machine wall time
depends on the other load; compare before/after runs of one session as ratios.

Usage::

    python bench/bench_compress_volume.py [--slices 275,128] [--seed 9500] [--sweep-slices 32]
        [--job] [--repo PATH] [--segmenter builtin-bf16] [--tag after] [--out bench/results/compress_volume.json]

``--repo`` runs another checkout (e.g. a worktree of the code before issue 17) with this venv.
Phantom seeds 9500-9509 are the ``compress-bench`` range of dmic_core/datasets/seeds.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
#: Stages of result.json in the order they run.
STAGES = ("startup", "read", "mask", "decide", "to_samples", "encode", "decode", "codec_other", "to_hu",
          "segment", "score", "write")


#: The sweep's 16 points: 8 HEVC base QPs and 8 DMIC lambdas.
SWEEP_QPS = [12, 17, 22, 27, 32, 37, 42, 47]
SWEEP_LAMBDAS = [0.0, 0.5, 1.0, 3.0, 5.0, 10.0, 30.0, 100.0]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _statm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_MB


def tree_rss_mb(pid: int) -> float:
    """Memory of the process tree: the main process's RSS plus each child's PSS.

    The main process is read from ``statm`` (a counter: cheap). Reading its PSS from
    ``smaps_rollup`` every 20 ms walked 1.4 GB of page tables under the process's memory lock and
    slowed the measured job by a third (38.6 s alone, 58.5 s sampled; issue 17). Children (e.g.
    libde265's forked decoder) are read as PSS so that the pages they share with the parent are
    not counted twice, as a plain RSS sum would. The result is an upper bound of the tree's PSS.
    """
    tree = _tree(pid)
    total = 0.0
    for p in tree:
        if p != pid:
            try:
                with open(f"/proc/{p}/smaps_rollup") as fh:
                    total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) / 1024
                continue
            except (OSError, StopIteration, ValueError):
                pass
        try:
            total += _statm_mb(p)
        except OSError:
            pass
    return total


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run ``cmd``, sampling its process tree's RSS; wall, peak RSS (sampled tree and the kernel's
    ``ru_maxrss``: the largest single process of the tree), samples, load average before/after."""
    samples: list[tuple[float, float]] = []
    before = load()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                samples.append((time.perf_counter() - t0, tree_rss_mb(proc.pid)))
                done.wait(0.02)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        thread.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-2000:]}")
    return {"wall_s": wall, "peak_tree_rss_mb": max((m for _, m in samples), default=0.0),
            "maxrss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "samples": samples, "load_before": before,
            "load_after": load(), "stdout": stdout}


def stage_table(seconds: dict[str, float], samples: list[tuple[float, float]], wall: float) -> list[dict]:
    rows, t = [], 0.0
    order = [s for s in STAGES if s in seconds] + [s for s in seconds if s not in STAGES]
    for stage in order:
        end = t + seconds[stage]
        inside = [m for ts, m in samples if t <= ts <= end]
        rows.append({"stage": stage, "wall_s": round(seconds[stage], 3),
                     "peak_rss_mb": round(max(inside), 1) if inside else None})
        t = end
    inside = [m for ts, m in samples if ts >= t]
    rows.append({"stage": "unaccounted", "wall_s": round(wall - t, 3),
                 "peak_rss_mb": round(max(inside), 1) if inside else None})
    return rows


def env_for(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def phantom(seed: int, slices: int, data: Path) -> Path:
    folder = data / f"p{seed}-{slices}"
    image = folder / f"phantom-{seed}.img.nii.gz"
    if not image.is_file():
        subprocess.run([sys.executable, "-m", "dmic_core.cli", "phantom", "--seed", str(seed), "--slices",
                        str(slices), "--out", str(folder)], check=True, cwd=ROOT, env=env_for(ROOT),
                       stdout=subprocess.DEVNULL)
    return image


def bench_compress(image: Path, repo: Path, work: Path, segmenter: str = "builtin") -> dict:
    out = work / f"compress-{image.parent.name}"
    cmd = [sys.executable, "-m", "dmic_core.cli", "compress", str(image), "--method", "dmic", "--lambda", "10",
           "--out", str(out)] + (["--segmenter", segmenter] if segmenter != "builtin" else [])
    run = run_measured(cmd, env_for(repo), repo)
    result = json.loads((out / "result.json").read_text())
    seconds = {k[len("seconds_"):]: float(v) for k, v in result.items() if k.startswith("seconds_")}
    rows = stage_table(seconds, run["samples"], run["wall_s"])
    encode = seconds.get("encode") or float("nan")
    return {"image": image.name, "frames": result["summary"]["frames"], "wall_s": round(run["wall_s"], 2),
            "cpu_s": round(run["cpu_s"], 2), "user_s": round(run["user_s"], 2), "sys_s": round(run["sys_s"], 2),
            "peak_tree_rss_mb": round(run["peak_tree_rss_mb"], 1), "maxrss_mb": round(run["maxrss_mb"], 1),
            "whole_over_encode": round(run["wall_s"] / encode, 2), "stages": rows,
            "reported_s": round(sum(seconds.values()), 2), "load_before": run["load_before"],
            "load_after": run["load_after"], "segmenter": segmenter, "miou": result["miou"], "dice": result["dice"], "bits": result["bits"],
            "stream_sha256": _sha(out / "stream.hevc")}


def bench_sweep(image: Path, repo: Path, work: Path) -> dict:
    qps, lambdas = SWEEP_QPS, SWEEP_LAMBDAS
    out = work / f"sweep-{image.parent.name}"
    cmd = [sys.executable, "-m", "dmic_core.cli", "sweep", str(image), "--methods", "hevc,dmic",
           "--qps", ",".join(f"{q:g}" for q in qps), "--lambdas", ",".join(f"{x:g}" for x in lambdas),
           "--out", str(out)]
    run = run_measured(cmd, env_for(repo), repo)
    with open(out / "points.csv") as fh:
        points = list(csv.DictReader(fh))
    sums: dict[str, float] = {}
    for p in points:
        for k, v in p.items():
            if k.startswith("seconds_") and v not in ("", None):
                sums[k[len("seconds_"):]] = sums.get(k[len("seconds_"):], 0.0) + float(v)
    return {"image": image.name, "points": len(points), "qps": qps, "lambdas": lambdas,
            "wall_s": round(run["wall_s"], 2), "peak_tree_rss_mb": round(run["peak_tree_rss_mb"], 1),
            "maxrss_mb": round(run["maxrss_mb"], 1), "stage_sums_s": {k: round(v, 2) for k, v in sums.items()},
            "whole_over_encode_sum": round(run["wall_s"] / sums["encode"], 2) if sums.get("encode") else None,
            "load_before": run["load_before"], "load_after": run["load_after"]}


def bench_job(image: Path, repo: Path, work: Path) -> dict:
    out = work / f"job-{image.parent.name}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_job", str(image), str(out)]
    run = run_measured(cmd, env_for(repo), repo)
    report = json.loads(run["stdout"].strip().splitlines()[-1])
    return {"image": image.name, "wall_s": round(run["wall_s"], 2),
            "peak_tree_rss_mb": round(run["peak_tree_rss_mb"], 1), "maxrss_mb": round(run["maxrss_mb"], 1), **report,
            "load_before": run["load_before"], "load_after": run["load_after"]}


def _job_child(image: str, out: str) -> None:
    """In the measured process: one app job of one DMIC point through the job store."""
    t0 = time.perf_counter()
    import dmic_core.runs as runs
    from dmic_core.jobs.store import JobStore, TaskSpec
    from dmic_core.jobs.tasks import execute_task

    timing = {"case_s": 0.0, "progress_s": 0.0, "progress_calls": 0}
    cached_case = runs.cached_case

    def timed_case(*a, **k):
        t = time.perf_counter()
        try:
            return cached_case(*a, **k)
        finally:
            timing["case_s"] += time.perf_counter() - t

    report_progress = JobStore.report_progress

    def timed_progress(self, *a, **k):
        t = time.perf_counter()
        try:
            return report_progress(self, *a, **k)
        finally:
            timing["progress_s"] += time.perf_counter() - t
            timing["progress_calls"] += 1

    runs.cached_case = timed_case  # timing wrappers around the real functions
    JobStore.report_progress = timed_progress
    imports = time.perf_counter() - t0
    workspace = Path(out)
    workspace.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    store = JobStore(workspace)
    spec = TaskSpec("point", image, "dmic", 10.0, str(workspace / "dmic_10"), {})
    store.create_job("bench", [spec], title="bench")
    task = store.claim_next("bench-runner", os.getpid())
    setup_s = time.perf_counter() - t
    t = time.perf_counter()
    status = execute_task(workspace, task)
    execute_s = time.perf_counter() - t
    result = json.loads((workspace / "dmic_10" / "result.json").read_text())
    stages = sum(float(v) for k, v in result.items() if k.startswith("seconds_"))
    overhead = execute_s - timing["case_s"] - stages
    print(json.dumps({"status": status, "imports_s": round(imports, 3), "store_setup_s": round(setup_s, 3),
                      "execute_s": round(execute_s, 2), "case_read_and_mask_s": round(timing["case_s"], 2),
                      "point_stages_s": round(stages, 2), "progress_calls": timing["progress_calls"],
                      "progress_s": round(timing["progress_s"], 3),
                      "job_overhead_s": round(overhead + setup_s, 3),
                      "job_overhead_note": "store setup + claim, progress writes, cancel checks, partial folder "
                                           "and its publication, finish: execute_task minus the case (read, mask) "
                                           "minus the point's own stages"}))


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def print_stages(entry: dict) -> None:
    print(f"\n{entry['image']} ({entry['frames']} frames): wall {entry['wall_s']} s, CPU {entry['cpu_s']} s "
          f"(sys {entry['sys_s']}), peak tree RSS "
          f"{entry['peak_tree_rss_mb']} MB (ru_maxrss {entry['maxrss_mb']} MB), whole/encode {entry['whole_over_encode']}x, "
          f"load {entry['load_before']} -> {entry['load_after']}")
    for row in entry["stages"]:
        print(f"  {row['stage']:12s} {row['wall_s']:8.2f} s  peak {row['peak_rss_mb']} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", default="275,128", help="volume lengths (512 x 512 frames)")
    parser.add_argument("--seed", type=int, default=9500, help="first phantom seed (compress-bench range)")
    parser.add_argument("--sweep-slices", type=int, default=0, help="also a 16-point sweep of a volume this long")
    parser.add_argument("--only-extras", action="store_true", help="skip the compress runs (sweep/job only)")
    parser.add_argument("--job", action="store_true", help="also one app job (job store) on the shortest volume")
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dmic-bench-compress")
    parser.add_argument("--segmenter", default="builtin",
                        help="compress runs only: builtin (float32, the default), builtin-bf16 or builtin-lite (opt-in, results differ)")
    parser.add_argument("--tag", default="after")
    parser.add_argument("--out", type=Path, default=RESULTS / "compress_volume.json")
    parser.add_argument("--_job", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._job:
        _job_child(*args._job)
        return 0
    args.data.mkdir(parents=True, exist_ok=True)
    lengths = [int(s) for s in args.slices.split(",") if s.strip()]
    report: dict = {"tag": args.tag, "repo": os.path.relpath(args.repo.resolve(), ROOT), "cpus": len(os.sched_getaffinity(0)),
                    "machine": platform.processor() or platform.machine(), "volumes": [], "started_load": load()}
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        work = Path(tmp)
        for i, n in enumerate([] if args.only_extras else lengths):
            entry = bench_compress(phantom(args.seed + i, n, args.data), args.repo.resolve(), work, args.segmenter)
            print_stages(entry)
            report["volumes"].append(entry)
        if args.sweep_slices:
            image = phantom(args.seed + len(lengths), args.sweep_slices, args.data)
            report["sweep"] = bench_sweep(image, args.repo.resolve(), work)
            print("\nsweep:", json.dumps(report["sweep"]))
        if args.job:
            image = phantom(args.seed + len(lengths) - 1, min(lengths), args.data)
            report["job"] = bench_job(image, args.repo.resolve(), work)
            print("\njob:", json.dumps(report["job"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    previous[args.tag] = report
    args.out.write_text(json.dumps(previous, indent=1) + "\n")
    print(f"\nwrote {args.out} [{args.tag}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
