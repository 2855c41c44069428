"""Issue 4 sweep report: every method on held-out phantoms and the real CT, BD against constant-QP HEVC.

    python bench/sweep_report.py [--volumes phantom-7001,phantom-7002,phantom-7003,ct]
        [--paper-agents assets/agents_pretrained.pt] [--tuned-agents assets/agents_dmic.pt]
        [--extended-agents assets/agents_extended.pt]
        [--out docs/results/sweeps] [--work work_dirs/sweeps] [--workers 2] [--report-only]

Every point is a real encode (x265, the task coding: 12-bit full range, default preset), a real
decode and a real segmentation (the builtin U-Net): never the surrogate. Methods: ``hevc``
(constant-QP anchor), the five hand-crafted maps, ``ratecontrol`` (x265 ABR at the anchor's
rates), ``dmic`` (paper action space, the source-domain pretrained agents), ``dmic-tuned`` (the
shipped few-shot tuned agents of issue 5) and ``dmic-extended`` (the extended space's agents): the
same ``dmic`` decider with three checkpoints. Points are appended to ``WORK/<volume>/points.jsonl``
as they finish, so re-running resumes; ``--report-only`` only rebuilds the tables.

Writes ``OUT/<volume>/{points.csv,bd.json,curves.html}``, ``OUT/summary.json`` (BD per method per
volume and the mean over volumes), ``OUT/summary.html`` (plotly) and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmic_core import sweep as sw  # noqa: E402
from dmic_core.evaluation.bd import bd_table  # noqa: E402
from dmic_core.evaluation.offsets import OFFSET_KEYS, offset_summary  # noqa: E402
from dmic_core.methods import METHOD_NAMES, Decision, PointSpec, settings_for  # noqa: E402
from dmic_core.runs import CaseSpec, PointJob, run_points  # noqa: E402
from dmic_core.defaults import DEFAULT_AGENTS, LAMBDA_GRID, PRETRAINED_AGENTS, QP_GRID, shared_data_dir  # noqa: E402
from dmic_core.pipeline import TASK_CODING  # noqa: E402
from dmic_core.protocol.methods import decide_gop8  # noqa: E402

REAL_CT = shared_data_dir() / "cta-aorta-crop" / "ct.nii.gz"
#: Held-out phantom seeds: disjoint from the segmenter's (1000-3009), the agents' source domain
#: (5001-5012, 5900-5901) and the fine-tuning data of issue 5 (9100+).
PHANTOM_SEEDS = (7001, 7002, 7003)
#: The issue-4 report's real-CT slab, kept so that its committed logs resume. It lies inside the
#: segmenters' real-texture training frames (``segmentation.realdata.TRAIN_FRAMES``); the agents'
#: evaluation protocol codes held-out frames instead (``protocol.volumes.REAL_CT_SLICES``).
SWEEP_REAL_CT_SLICES = (60, 93)
SLAB = 33
#: The library's methods, then this report's own curves (other agents, reference rules).
BASE_METHODS = (*METHOD_NAMES, "dmic-tuned", "dmic-extended", "twolevel-ext", "gop8")
#: Extended-space reference rule (not learned): offset 0 on every foreground CTU, the extended
#: space's largest background offset elsewhere, QP_I = the setting (its GOP-8 P-frame rule).
TWOLEVEL_EXT_BG = 20


def _decide_twolevel_ext(case, setting, setup, **_):
    from dmic_core.agents.spaces import EXTENDED
    from dmic_core.codecs.qp import dmic_frame_qps
    from dmic_core.maps import mask_ctu_dqp

    start = time.perf_counter()
    qp_i = int(np.clip(int(setting), EXTENDED.qp_i[0], EXTENDED.qp_i[-1]))
    dqp = mask_ctu_dqp(case.reference.roi, 0, TWOLEVEL_EXT_BG)
    return Decision(dmic_frame_qps(qp_i, case.volume.n_frames), dqp, seconds=time.perf_counter() - start)


#: This report's own reference rules, run beside the registry's methods (``run_points(deciders=...)``).
EXTRA_DECIDERS = {"twolevel-ext": _decide_twolevel_ext, "gop8": decide_gop8}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def phantom_volume(seed: int, data_dir: Path) -> dict[str, Any]:
    """The phantom's files (generated once) and a 33-slice slab centred on its coronary label."""
    from dmic_core.io import load_label, load_volume

    image, label = data_dir / f"phantom-{seed}.img.nii.gz", data_dir / f"phantom-{seed}.label.nii.gz"
    if not (image.is_file() and label.is_file()):
        from dmic_core.cli import main as cli

        data_dir.mkdir(parents=True, exist_ok=True)
        assert cli(["phantom", "--seed", str(seed), "--out", str(data_dir)]) == 0
    vol = load_volume(image)
    per = (load_label(label, like=vol) > 0).sum(axis=(1, 2))
    mid = int(np.searchsorted(np.cumsum(per) / per.sum(), 0.5))
    start = max(0, min(mid - SLAB // 2, vol.n_frames - SLAB))
    return {"name": f"phantom-{seed}", "image": str(image), "label": str(label), "slices": (start, start + SLAB),
            "reference": "label"}


def real_ct_x4(data_dir: Path, factor: int = 4) -> Path:
    """The real CT crop zoomed in-plane (linear) from 1.5 mm to 0.375 mm, the segmenter's training pixel
    and ImageCAS-like geometry: 504 x 480 frames, 8 x 8 CTUs instead of 2 x 2, so CTU-level methods
    have background CTUs to work with. Slices (1.5 mm) and the world frame are unchanged. The same
    file as the evaluation protocol's (:func:`dmic_core.protocol.volumes.real_ct_ccta`)."""
    from dmic_core.protocol.volumes import real_ct_ccta

    return Path(real_ct_ccta(data_dir, factor).image)


def volumes(names: list[str], work: Path) -> list[dict[str, Any]]:
    out = []
    for name in names:
        if name == "ct":
            out.append({"name": "ct-aorta-crop", "image": str(REAL_CT), "label": None, "slices": SWEEP_REAL_CT_SLICES,
                        "reference": "segmentation of the original"})
        elif name == "ct-x4":
            out.append({"name": "ct-aorta-crop-x4", "image": str(real_ct_x4(work / "data")), "label": None,
                        "slices": SWEEP_REAL_CT_SLICES, "reference": "segmentation of the original (0.375 mm)"})
        elif name.startswith("phantom-"):
            out.append(phantom_volume(int(name.split("-")[1]), work / "data"))
        else:
            raise ValueError(f"unknown volume {name!r} (phantom-SEED, ct or ct-x4)")
    return out


def run_volume(vol: dict[str, Any], methods: list[str], qps: list[float], lambdas: list[float],
               agents: dict[str, str], work: Path, workers: int) -> pd.DataFrame:
    """All points of one volume (resuming from ``points.jsonl``)."""
    path = work / vol["name"] / "points.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    done = {(r["method"], float(r["setting"])) for r in rows}
    case = CaseSpec(vol["image"], vol["label"], "builtin", tuple(vol["slices"]))
    todo: list[PointJob] = []
    for method in methods:
        base = "dmic" if method.startswith("dmic") else method  # dmic-tuned, dmic-extended: other agents
        for setting in settings_for(base, qps, lambdas):
            if (method, setting) not in done:
                options = {"agents": agents[method]} if method in agents else {}
                todo.append(PointJob(case, PointSpec(base, setting), options, method))
    if todo:
        print(f"[{vol['name']}] {len(todo)} points to run ({len(rows)} done)", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        anchors = {(case, float(r["setting"])): r["bits"] for r in rows if r["method"] == "hevc"}
        with path.open("a") as log:
            def on_point(job: PointJob, result, n: int, total: int) -> None:
                row = {**result.row(), "method": job.name, **{k: result.extra[k] for k in OFFSET_KEYS if k in result.extra}}
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                print(f"[{vol['name']}] {len(rows)}: {row['method']}@{row['setting']:g} "
                      f"{row['bpp']:.4f} bpp mIoU {row['miou']:.4f} PSNR {row['psnr_hu']:.2f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

            run_points(todo, setup=TASK_CODING, workers=workers, on_point=on_point, anchor_bits=anchors,
                       deciders=EXTRA_DECIDERS, annotate=offset_summary, keep_maps=False)
    frame = pd.DataFrame(rows)
    frame = frame[frame.method.isin(methods)]
    return frame.sort_values(["method", "bpp"]).reset_index(drop=True)


def _json_safe(rec: dict[str, Any]) -> dict[str, Any]:
    """A record with NaN / inf numbers as None (JSON null)."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in rec.items()}


def import_points(csv_path: Path, jsonl_path: Path) -> None:
    """Seed a missing point log from a committed ``points.csv`` (NaN cells become null)."""
    if jsonl_path.is_file() or not csv_path.is_file():
        return
    frame = pd.read_csv(csv_path)
    jsonl_path.parent.mkdir(parents=True, exist_ok=True)
    with jsonl_path.open("w") as out:
        for rec in frame.to_dict(orient="records"):
            out.write(json.dumps(_json_safe(rec)) + "\n")
    print(f"imported {len(frame)} points from {csv_path}", file=sys.stderr)


def summarise(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Per method: BD per volume and the mean over the volumes where it is defined."""
    per: dict[str, dict[str, Any]] = {}
    for vol, table in tables.items():
        for rec in table.to_dict(orient="records"):
            entry = per.setdefault(rec["method"], {"volumes": {}})
            entry["volumes"][vol] = _json_safe({k: v for k, v in rec.items() if k != "method"})
    for method, entry in per.items():
        for key in ("bd_rate_pct", "bd_miou_pp", "bd_rate_psnr_pct", "bd_psnr_db"):
            vals = [v[key] for v in entry["volumes"].values() if v.get(key) is not None]
            entry[f"mean_{key}"] = float(np.mean(vals)) if vals else None
            entry[f"n_{key}"] = len(vals)
            # phantoms only (held-out seeds with labels): the same volumes for every method
            vals = [v[key] for n, v in entry["volumes"].items() if n.startswith("phantom") and v.get(key) is not None]
            entry[f"phantom_mean_{key}"] = float(np.mean(vals)) if vals else None
            entry[f"phantom_n_{key}"] = len(vals)
    return per


def _ordered(summary: dict[str, Any]) -> list[str]:
    """Methods in the report's order: the built-in ones, then any ``--extra-agents`` names."""
    return [m for m in BASE_METHODS if m in summary] + sorted(m for m in summary if m not in BASE_METHODS)


def _fmt(v: Any, spec: str = "+.1f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def print_table(summary: dict[str, Any], vols: list[str]) -> str:
    head = "| method | " + " | ".join(vols) + " | mean (phantoms) | mean (all with a value) |"
    lines = [head, "|" + "---|" * (len(vols) + 3)]
    for method in _ordered(summary):
        entry = summary[method]
        cells = []
        for v in vols:
            r = entry["volumes"].get(v)
            if r is None:
                cells.append("-")
            else:
                cells.append(f"{_fmt(r.get('bd_rate_pct'))}% / {_fmt(r.get('bd_miou_pp'), '+.2f')} pp / "
                             f"{_fmt(r.get('bd_rate_psnr_pct'))}% / {_fmt(r.get('bd_psnr_db'), '+.2f')} dB")
        for pre in ("phantom_mean_", "mean_"):
            cells.append(f"{_fmt(entry[pre + 'bd_rate_pct'])}% / {_fmt(entry[pre + 'bd_miou_pp'], '+.2f')} pp / "
                         f"{_fmt(entry[pre + 'bd_rate_psnr_pct'])}% / {_fmt(entry[pre + 'bd_psnr_db'], '+.2f')} dB")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print("BD vs constant-QP HEVC: BD-rate(mIoU) / BD-mIoU / BD-rate(PSNR) / BD-PSNR")
    print(text)
    return text


def summary_figure(summary: dict[str, Any], vols: list[str], path: Path, plotlyjs: str = "cdn") -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["BD-rate on mIoU (%)", "BD-mIoU (pp)"])
    methods = _ordered(summary)
    for v in vols + ["mean (phantoms)"]:
        for col, key in ((1, "bd_rate_pct"), (2, "bd_miou_pp")):
            ys = [(summary[m][f"phantom_mean_{key}"] if v.startswith("mean") else summary[m]["volumes"].get(v, {}).get(key))
                  for m in methods]
            fig.add_trace(go.Bar(x=methods, y=ys, name=v, legendgroup=v, showlegend=col == 1), row=1, col=col)
    fig.add_hline(y=-47.6, line_dash="dash", annotation_text="paper -47.6%", row=1, col=1)
    fig.add_hline(y=-60, line_dash="dot", annotation_text="goal -60%", row=1, col=1)
    fig.update_layout(barmode="group", template="plotly_white", height=480,
                      title="BD against constant-QP HEVC (real encodes)")
    fig.write_html(str(path), include_plotlyjs={"local": "directory", "cdn": "cdn"}.get(plotlyjs, True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--volumes", default=",".join([f"phantom-{s}" for s in PHANTOM_SEEDS] + ["ct"]))
    p.add_argument("--methods", default=",".join(BASE_METHODS))
    p.add_argument("--qps", default=",".join(str(q) for q in QP_GRID))
    p.add_argument("--lambdas", default=",".join(f"{v:g}" for v in LAMBDA_GRID))
    p.add_argument("--paper-agents", default=str(ROOT / "assets" / PRETRAINED_AGENTS),
                   help="paper-space checkpoint of the method dmic (source-domain pretraining)")
    p.add_argument("--tuned-agents", default=str(ROOT / "assets" / DEFAULT_AGENTS),
                   help="paper-space checkpoint of the method dmic-tuned (few-shot tuned on the target task)")
    p.add_argument("--extended-agents", default=str(ROOT / "assets" / "agents_extended.pt"))
    p.add_argument("--extra-agents", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="one more agents curve (NAME must start with dmic-, and be listed in --methods); repeatable")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "sweeps")
    p.add_argument("--work", type=Path, default=ROOT / "work_dirs" / "sweeps")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--plotlyjs", default="local", choices=["local", "cdn", "inline"],
                   help="plotly.js in the HTML figures: one local plotly.min.js in OUT (default, offline), "
                        "a CDN link, or inlined in each file")
    p.add_argument("--report-only", action="store_true", help="no new points: tables from what is done")
    p.add_argument("--import-points", type=Path, default=None, metavar="DIR",
                   help="seed a volume's missing WORK/<volume>/points.jsonl from DIR/<volume>/points.csv "
                        "(e.g. the committed docs/results/sweeps on a fresh clone), so only new points run")
    args = p.parse_args(argv)

    methods = [m for m in args.methods.split(",") if m]
    qps = [float(v) for v in args.qps.split(",")]
    lambdas = [float(v) for v in args.lambdas.split(",")]
    agents = {"dmic": args.paper_agents, "dmic-tuned": args.tuned_agents, "dmic-extended": args.extended_agents}
    for item in args.extra_agents:
        name, _, path = item.partition("=")
        if not name.startswith("dmic-") or not path:
            p.error(f"--extra-agents wants dmic-NAME=CHECKPOINT, got {item!r}")
        agents[name] = path
    for method, path in agents.items():
        if method in methods and not Path(path).is_file():
            print(f"no agents at {path}: {method} left out", file=sys.stderr)
            methods.remove(method)
    vols = volumes([v for v in args.volumes.split(",") if v], args.work)
    from dmic_core.segmentation.config import WEIGHTS_NAME

    seg_path = ROOT / "assets" / WEIGHTS_NAME
    meta_common = {"coding": {"codec": TASK_CODING.codec, "bit_depth": TASK_CODING.bit_depth,
                              "preset": TASK_CODING.preset or "x265 default"},
                   "segmenter": {"name": "builtin", "sha256_16": _sha(seg_path) if seg_path.is_file() else None},
                   "agents": {k: {"path": os.path.relpath(v, ROOT), "sha256_16": _sha(Path(v))}
                              for k, v in agents.items() if Path(v).is_file()},
                   "qps": qps, "lambdas": lambdas}
    tables: dict[str, pd.DataFrame] = {}
    if args.import_points is not None:
        for vol in vols:
            import_points(args.import_points / vol["name"] / "points.csv", args.work / vol["name"] / "points.jsonl")
    for vol in vols:
        if args.report_only:
            path = args.work / vol["name"] / "points.jsonl"
            if not path.is_file():
                continue
            points = pd.DataFrame([json.loads(x) for x in path.read_text().splitlines() if x.strip()])
            points = points[points.method.isin(methods)].sort_values(["method", "bpp"]).reset_index(drop=True)
        else:
            points = run_volume(vol, methods, qps, lambdas, agents, args.work, args.workers)
        meta = {**meta_common, "volume": vol["name"], "input": os.path.relpath(vol["image"], ROOT),
                "label": None if vol["label"] is None else os.path.relpath(vol["label"], ROOT),
                "slices": list(vol["slices"]), "reference": vol["reference"]}
        paths = sw.write_sweep(args.out / vol["name"], points, meta)
        if args.plotlyjs != "inline":  # committed reports: 10 kB instead of 4.8 MB of inlined plotly.js
            from dmic_core.plotting import rate_curves_figure

            # "local": one plotly.min.js in OUT (written with summary.html), so the reports work offline
            rate_curves_figure(points, title=f"Rate vs accuracy: {vol['name']} (real encodes)").write_html(
                str(paths["figure"]), include_plotlyjs="../plotly.min.js" if args.plotlyjs == "local" else "cdn")
        tables[vol["name"]] = bd_table(points)
    summary = summarise(tables)
    names = list(tables)
    text = print_table(summary, names)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"meta": meta_common, "volumes": names,
                                                       "methods": summary, "table_md": text}, indent=2) + "\n")
    summary_figure(summary, names, args.out / "summary.html", args.plotlyjs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
