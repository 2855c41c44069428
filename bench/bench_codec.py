"""Speed, size and quality of the codec backends on real CT, to choose x265's default preset.

Codes 33 axial slices of ``cta-aorta-crop/ct.nii.gz`` in the shared data folder
(:func:`dmic_core.defaults.shared_data_dir`: ``$DMIC_SHARED_DATA``, else ``../shared/data``),
resampled in-plane to 512x512 (linear) and mapped to 12-bit samples by the library's
``SampleMapping`` (HU -1024..3071 -> 0..4095), with the paper's
frame QPs (``dmic_frame_qps``) at paper QP_I 22/27/32/37 (coded QP = paper QP + 12, clipped
to 51), with and without a random per-CTU offset map in {-2, 0, 2, 4, 6, 8}. For each x265
preset it reports seconds per frame, total encode seconds, bits, PSNR (peak 4095, the library's) and peak
memory, and the BD-rate (PSNR, pchip) against x265 veryslow and against HM; HM (the patched
build of ``scripts/setup.sh --with-hm``, per-CTU maps included) runs side by side when installed
(``--no-hm`` leaves it out). ``--data phantom:SEED`` codes 33 central slices of a synthetic CCTA
phantom (``dmic phantom``, 512x512) instead of the real crop.

Usage::

    python bench/bench_codec.py [--presets ultrafast,fast,medium,slow,veryslow] [--threads 2]
                                [--frames 33] [--data ct|phantom:SEED] [--no-hm]
                                [--out bench/results/codec.json]

The x265-vs-HM anchor figures in docs/codec.md come from::

    python bench/bench_codec.py --presets slow --out bench/results/codec_hm_ct.json
    python bench/bench_codec.py --presets slow --data phantom:7001 --out bench/results/codec_hm_phantom.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmic_core.defaults import REPO_ROOT, repo_relative, shared_data_dir
from dmic_core.metrics.quality import psnr_from_sse
from dmic_core.transforms.hu import SampleMapping

RESULTS = Path(__file__).resolve().parent / "results"
CT_PATH = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
PAPER_QP_I = (22, 27, 32, 37)
MAP_VALUES = (-2, 0, 2, 4, 6, 8)
BIT_DEPTH = 12
MAPPING = SampleMapping(BIT_DEPTH)  # the default 12-bit window: one HU per level
WINDOW_HU = MAPPING.window_hu


def load_ct_frames(path: Path, n_frames: int, size: int = 512) -> np.ndarray:
    """``n_frames`` central axial slices, resampled to ``size``x``size``, as 12-bit samples."""
    import nibabel as nib
    from scipy.ndimage import zoom

    hu = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)  # (x, y, z), RAS-ish
    start = max(0, (hu.shape[2] - n_frames) // 2)
    slices = [hu[:, :, k].T for k in range(start, start + n_frames)]  # rows = y, cols = x
    frames = [zoom(s, (size / s.shape[0], size / s.shape[1]), order=1) for s in slices]
    return MAPPING.to_samples(np.rint(np.stack(frames)))


def load_phantom_frames(seed: int, n_frames: int, size: int = 512) -> np.ndarray:
    """``n_frames`` slices of the synthetic CCTA phantom ``seed`` (as ``dmic phantom``), 12-bit."""
    from dmic_core.datasets.phantom import generate_phantom

    volume, _label = generate_phantom(seed, n_frames, size=size)
    return MAPPING.to_samples(volume.hu)


def psnr(recon: np.ndarray, frames: np.ndarray) -> float:
    """PSNR of samples; one level is one HU here, so this is the library's HU PSNR."""
    diff = recon.astype(np.float64) - frames.astype(np.float64)
    return psnr_from_sse(float(np.sum(diff * diff)), diff.size)


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (Linux ``clear_refs`` 5); False where it has no
    effect (then the reported peak is the process-wide peak so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _status_kb("VmHWM"), _status_kb("VmRSS")
    return hwm is not None and rss is not None and hwm <= 1.05 * rss


def _peak_rss_mb() -> float:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(codec: Any, frames: np.ndarray, qps: np.ndarray, offsets: np.ndarray | None,
            versions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Encode once and measure; peak RSS is per run where /proc allows, else process-wide."""
    per_run = _reset_peak_rss()
    tracemalloc.start()
    def cpu_now() -> float:  # this process and its waited-for children (HM runs as one)
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0 = cpu_now()
    start = time.perf_counter()
    res = codec.encode(frames, BIT_DEPTH, qps, offsets)
    wall = time.perf_counter() - start
    cpu = cpu_now() - cpu0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if versions is not None:
        versions[res.codec] = res.params.get("version") or res.params.get("x265_version")
    return {
        "encode_s": round(res.encode_seconds, 3),
        "s_per_frame": round(res.encode_seconds / len(frames), 4),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),  # all threads; contention-free estimate of 2-core wall: cpu/2
        "bits": int(res.total_bits),
        "kbits": round(res.total_bits / 1000, 1),
        "psnr_db": round(psnr(res.recon, frames), 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_rss_scope": "run" if per_run else "process",
        "python_peak_mb": round(py_peak / 2**20, 1),
        "recon_check": res.params.get("recon_check", "decoded"),
    }


def bd_rate(anchor: list[dict], test: list[dict]) -> float | None:
    """BD-rate (%) of ``test`` against ``anchor`` on (bits, PSNR), pchip; None if undefined."""
    try:
        import bjontegaard as bd

        return round(float(bd.bd_rate([r["bits"] for r in anchor], [r["psnr_db"] for r in anchor],
                                      [r["bits"] for r in test], [r["psnr_db"] for r in test],
                                      method="pchip", min_overlap=0.5)), 2)
    except Exception:  # noqa: BLE001 - too little overlap or a missing package
        return None


def main(argv: Sequence[str] | None = None) -> int:
    from dmic_core.codecs import CODECS, get_codec
    from dmic_core.codecs.qp import ctu_grid_shape, dmic_frame_qps, paper_to_coded_qp

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="ultrafast,fast,medium,slow,veryslow")
    ap.add_argument("--threads", type=int, default=2, help="x265 worker threads (pools)")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--ct", type=Path, default=CT_PATH)
    ap.add_argument("--data", default="ct", help="ct (the real crop, --ct) or phantom:SEED")
    ap.add_argument("--no-map", action="store_true", help="skip the per-CTU map runs")
    ap.add_argument("--no-hm", action="store_true", help="leave HM out even when installed")
    ap.add_argument("--out", type=Path, default=RESULTS / "codec.json")
    args = ap.parse_args(argv)

    if args.data == "ct":
        frames = load_ct_frames(args.ct, args.frames)
        data_name = repo_relative(args.ct)
    elif args.data.startswith("phantom:"):
        seed = int(args.data.split(":", 1)[1])
        frames = load_phantom_frames(seed, args.frames)
        data_name = f"dmic phantom --seed {seed} --slices {args.frames} (512x512)"
    else:
        ap.error(f"--data must be ct or phantom:SEED, got {args.data!r}")
    n, height, width = frames.shape
    rng = np.random.default_rng(2024)
    ctu_map = rng.choice(MAP_VALUES, size=(n, *ctu_grid_shape(height, width))).astype(np.int64)
    maps = {"none": None} if args.no_map else {"none": None, "random": ctu_map}

    configs: list[tuple[str, Any]] = [
        (f"x265 {p}", get_codec("x265", preset=p, threads=args.threads))
        for p in args.presets.split(",") if p]
    hm_reason = "left out (--no-hm)" if args.no_hm else CODECS["hm"].availability()
    if hm_reason is None:
        configs.append(("HM", get_codec("hm")))

    versions: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    print(f"{n} frames {height}x{width}, 12-bit, threads={args.threads}, cpus={os.cpu_count()}")
    print(f"{'codec':<16} {'map':<7} {'QP_I':>4} {'s/frame':>8} {'total s':>8} {'kbits':>9} "
          f"{'PSNR dB':>8} {'peak MB':>8}")
    for name, codec in configs:
        for map_name, offsets in maps.items():
            if name == "HM" and offsets is not None and not codec.supports_ctu_map():
                continue
            for qp_i in PAPER_QP_I:
                qps = paper_to_coded_qp(dmic_frame_qps(qp_i, n), BIT_DEPTH, WINDOW_HU)
                row = {"codec": name, "map": map_name, "paper_qp_i": qp_i,
                       "coded_qp_i": int(qps[0]), **run_one(codec, frames, qps, offsets, versions)}
                rows.append(row)
                print(f"{name:<16} {map_name:<7} {qp_i:>4} {row['s_per_frame']:>8.3f} "
                      f"{row['encode_s']:>8.2f} {row['kbits']:>9.1f} {row['psnr_db']:>8.2f} "
                      f"{row['peak_rss_mb']:>8.0f}", flush=True)

    summary: list[dict[str, Any]] = []
    for name, _ in configs:
        for map_name in maps:
            runs = [r for r in rows if r["codec"] == name and r["map"] == map_name]
            ref = [r for r in rows if r["codec"] == "x265 veryslow" and r["map"] == map_name]
            hm = [r for r in rows if r["codec"] == "HM" and r["map"] == map_name]
            if not runs:
                continue
            summary.append({
                "codec": name, "map": map_name,
                "total_encode_s": round(sum(r["encode_s"] for r in runs), 2),
                "mean_encode_s": round(float(np.mean([r["encode_s"] for r in runs])), 2),
                "mean_cpu_s": round(float(np.mean([r["cpu_s"] for r in runs])), 2),
                "bd_rate_vs_veryslow_pct": bd_rate(ref, runs) if ref else None,
                "bd_rate_vs_hm_pct": bd_rate(hm, runs) if hm else None,
            })
    print(f"\n{'codec':<16} {'map':<7} {'mean s/run':>10} {'cpu s/run':>9} "
          f"{'BD-rate vs veryslow %':>22} {'vs HM %':>8}")
    for s in summary:
        print(f"{s['codec']:<16} {s['map']:<7} {s['mean_encode_s']:>10.2f} {s['mean_cpu_s']:>9.2f} "
              f"{str(s['bd_rate_vs_veryslow_pct']):>22} {str(s['bd_rate_vs_hm_pct']):>8}")
    if hm_reason is not None:
        print(f"HM not run: {hm_reason}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "data": data_name, "frames": n, "versions": versions, "size": [height, width], "bit_depth": BIT_DEPTH,
        "threads": args.threads, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
        "machine": platform.processor() or platform.machine(), "hm": (hm_reason or "present").replace(str(REPO_ROOT), "."),
        "rows": rows, "summary": summary,
    }, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
