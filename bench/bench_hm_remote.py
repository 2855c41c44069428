"""HM runs of bench_codec.py, exported to run elsewhere in parallel and collected back.

HM 16.25 codes 33 frames of 512x512 in minutes per run on one core; on two shared cores the 16
runs of the x265-vs-HM anchor take hours. ``export`` writes every HM run of
``bench_codec.py --presets slow`` (same frames, frame QPs and random CTU map) as a folder with
HM's exact arguments (``dmic_core.codecs.hm.write_hm_job``) and a script that runs them all in
parallel, one per core, with the patched binaries of hm_bin/; ``collect`` decodes the returned
streams here (libde265), checks the slice QPs in HM's log and, for map runs, every CTU's QP in
the stream (the patched decoder's trace), measures PSNR like bench_codec.py and joins the rows
with bench_codec.py's x265 JSON of the same data, with BD-rates against HM.

Usage::

    python bench/bench_hm_remote.py export --out hm_bin/jobs
    (elsewhere, in the repository root with hm_bin/ carried:)  bash hm_bin/jobs/run_all.sh OUT
    python bench/bench_hm_remote.py collect OUT --x265 bench/results/codec_x265_ct.json \\
        --data ct --out bench/results/codec_hm_ct.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_codec as bc  # noqa: E402

RUN_ALL = r"""#!/usr/bin/env bash
# Runs every HM job of this folder in parallel (one per core) with ../TAppEncoderStatic.
# Usage: bash hm_bin/jobs/run_all.sh OUT   (writes OUT/<job>/{out.bin,log.txt,seconds.txt})
set -uo pipefail
JOBS=$(cd "$(dirname "$0")" && pwd); ENC="$JOBS/../TAppEncoderStatic"; OUT=$(mkdir -p "$1" && cd "$1" && pwd)
{ nproc; grep -m1 'model name' /proc/cpuinfo; uptime; } > "$OUT/machine.txt"
run() {
  local job=$1 t0 t1
  mkdir -p "$OUT/$job"
  cd "$JOBS/$job" || return 1
  t0=$(date +%s.%N)
  xargs -a args.txt -d '\n' "$ENC" > "$OUT/$job/log.txt" 2>&1; echo $? > "$OUT/$job/rc.txt"
  t1=$(date +%s.%N)
  echo "$t0 $t1" > "$OUT/$job/seconds.txt"
  cp out.bin "$OUT/$job/" 2>/dev/null; rm -f out.bin
}
export -f run; export JOBS ENC OUT
# longest first (low QP), so the parallel runs end together
ls "$JOBS" | grep -v '\.' | sort -t_ -k3n | xargs -P "$(nproc)" -I{} bash -c 'run {}'
"""


def _loaders(data: str) -> tuple[np.ndarray, str]:
    if data == "ct":
        return bc.load_ct_frames(bc.CT_PATH, 33), bc.repo_relative(bc.CT_PATH)
    seed = int(data.split(":", 1)[1])
    return bc.load_phantom_frames(seed, 33), f"dmic phantom --seed {seed} --slices 33 (512x512)"


def _maps(frames: np.ndarray) -> dict[str, np.ndarray | None]:
    """The bench's maps: none and the same random CTU map (seed 2024)."""
    from dmic_core.codecs.qp import ctu_grid_shape

    n, height, width = frames.shape
    rng = np.random.default_rng(2024)
    ctu_map = rng.choice(bc.MAP_VALUES, size=(n, *ctu_grid_shape(height, width))).astype(np.int64)
    return {"none": None, "random": ctu_map}


def _qps(qp_i: int, n: int) -> np.ndarray:
    from dmic_core.codecs.qp import dmic_frame_qps, paper_to_coded_qp

    return paper_to_coded_qp(dmic_frame_qps(qp_i, n), bc.BIT_DEPTH, bc.WINDOW_HU).astype(np.int64)


def export(out: Path, datas: Sequence[str]) -> None:
    from dmic_core.codecs.hm import clip_ctu_offsets, encoder_help, find_hm_binaries, write_hm_job

    encoder = find_hm_binaries().encoder
    if encoder is None:
        raise SystemExit("HM not built: bash scripts/setup.sh --with-hm PATH")
    help_text = encoder_help(encoder)
    out.mkdir(parents=True, exist_ok=True)
    for data in datas:
        frames, _ = _loaders(data)
        tag = data.replace(":", "")
        frames.astype("<u2").tofile(out / f"{tag}.yuv")
        for map_name, offsets in _maps(frames).items():
            for qp_i in bc.PAPER_QP_I:
                qps = _qps(qp_i, len(frames))
                job = out / f"{tag}_{map_name}_{qp_i}"
                job.mkdir(exist_ok=True)
                clipped = None if offsets is None else clip_ctu_offsets(qps, offsets)
                spec = write_hm_job(job, frames, bc.BIT_DEPTH, qps, clipped, help_text)
                (job / "in.yuv").unlink()  # all jobs of a volume share one YUV file
                args = [a.replace(str(job) + "/", "") for a in spec["args"]]
                args[args.index("in.yuv")] = f"../{tag}.yuv"
                i = args.index("rec.yuv")  # no reconstruction file: the stream is decoded here
                del args[i - 1:i + 1]
                (job / "args.txt").write_text("\n".join(args) + "\n")
    (out / "run_all.sh").write_text(RUN_ALL)
    print(f"wrote {len(list(out.glob('*_*_*')))} jobs to {out}")


def collect(results: Path, data: str, x265_json: Path, out: Path) -> None:
    from dmic_core.codecs.decode import decode_hevc
    from dmic_core.codecs.hm import decode_ctu_qps, hm_version, parse_hm_log, split_access_units

    frames, data_name = _loaders(data)
    n, height, width = frames.shape
    tag = data.replace(":", "")
    maps = _maps(frames)
    rows: list[dict[str, Any]] = []
    version = None
    for map_name, offsets in maps.items():
        for qp_i in bc.PAPER_QP_I:
            job = results / f"{tag}_{map_name}_{qp_i}"
            if not (job / "out.bin").is_file():
                print(f"missing: {job}")
                continue
            qps = _qps(qp_i, n)
            log = (job / "log.txt").read_text(errors="replace")
            version = hm_version(log) or version
            logged = [r[2] for r in parse_hm_log(log)]
            assert logged == qps.tolist(), (job, logged, qps.tolist())
            stream = (job / "out.bin").read_bytes()
            assert len(split_access_units(stream)) == n
            recon = decode_hevc(stream, bc.BIT_DEPTH)
            t0, t1 = map(float, (job / "seconds.txt").read_text().split())
            hm_total = re.search(r"Total Time:\s*([\d.]+)\s*sec", log)
            row = {"codec": "HM", "map": map_name, "paper_qp_i": qp_i, "coded_qp_i": int(qps[0]),
                   "encode_s": round(t1 - t0, 3), "s_per_frame": round((t1 - t0) / n, 4),
                   "hm_total_time_s": float(hm_total.group(1)) if hm_total else None,
                   "bits": 8 * len(stream), "kbits": round(8 * len(stream) / 1000, 1),
                   "psnr_db": round(bc.psnr(recon, frames), 3)}
            if offsets is not None:
                coded, with_dqp = decode_ctu_qps(stream, n, height, width)
                want = np.clip(qps[:, None, None] + offsets, 0, 51)
                row["ctu_qp_equal_fraction_where_coded"] = round(float((coded == want)[with_dqp].mean()), 6)
                row["ctus_with_dqp_fraction"] = round(float(with_dqp.mean()), 4)
            rows.append(row)
            print(f"HM {map_name:<7} {qp_i:>3} {row['encode_s']:>8.1f} s {row['kbits']:>9.1f} kbit "
                  f"{row['psnr_db']:>7.2f} dB", flush=True)
    x265 = json.loads(x265_json.read_text())
    assert x265["data"] == data_name, (x265["data"], data_name)
    all_rows = x265["rows"] + rows
    summary = []
    for codec in sorted({r["codec"] for r in all_rows}):
        for map_name in maps:
            runs = [r for r in all_rows if r["codec"] == codec and r["map"] == map_name]
            hm = [r for r in rows if r["map"] == map_name]
            if runs:
                summary.append({"codec": codec, "map": map_name,
                                "mean_encode_s": round(float(np.mean([r["encode_s"] for r in runs])), 2),
                                "bd_rate_vs_hm_pct": bc.bd_rate(hm, runs) if hm else None})
    for s in summary:
        print(s)
    machine = (results / "machine.txt").read_text().split("\n") if (results / "machine.txt").exists() else []
    out.write_text(json.dumps({
        "data": data_name, "frames": n, "size": [height, width], "bit_depth": bc.BIT_DEPTH,
        "versions": {**x265.get("versions", {}), "hm": version},
        "x265_machine": {"cpus": x265["cpus"], "load_avg": x265["load_avg"], "threads": x265["threads"]},
        "hm_machine": {"how": "bench/bench_hm_remote.py: all HM runs in parallel, one per core",
                       "nproc_model_uptime": machine[:3]},
        "rows": all_rows, "summary": summary}, indent=1))
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--out", type=Path, default=Path("hm_bin/jobs"))
    e.add_argument("--data", default="ct,phantom:7001")
    c = sub.add_parser("collect")
    c.add_argument("results", type=Path)
    c.add_argument("--data", default="ct")
    c.add_argument("--x265", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "export":
        export(args.out, [d for d in args.data.split(",") if d])
    else:
        collect(args.results, args.data, args.x265, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
