"""Where the oracle's BD-rate gain comes from, read off the evaluation's point log (issue 13).

The protocol's oracle is the upper envelope of every (QP_I, fg, bg) of its family on the
ground-truth mask: 48 points per volume in the paper space, 96 in the extended one, against 8 for
every other curve. This bench splits its gain into parts that can each be measured from points
already coded, so that "share of the oracle's gain" and the target BD-rate can be read for what
they are:

* **fixed pairs**: each (fg, bg) pair alone, 8 points like every method. The oracle minus the
  best single pair is what the per-lambda choice of offsets (and the envelope over 6x or 12x the
  points) adds.
* **envelope bonus of the same method**: the constant-QP anchor's 8 points plus the 8 of a grid
  shifted by 2 QPs (``bench/protocol_noise.py``), scored against the 8-point anchor. The method is
  the same, so what a 16-point envelope wins is selection of lucky points, not compression.
* **mask**: the default agents given the label as their mask against the same agents on the
  segmenter's mask; the oracle's pairs (fg 0, bg +8) and (fg 0, bg +12) on the ground-truth mask against
  the label-free ``two_level`` and ``two_level_ext``, the same pairs on the segmenter's mask of the
  original; and, per volume, the label's CTUs that mask misses and its CTUs without label.

It codes nothing and chooses nothing: it reads the evaluation volumes' logs, so no model, seed or
setting may be picked with it. The "best fixed pair" is the pair with the lowest mean over these
same volumes, so it is an upper reading of what one fixed pair can do, not a method.

Usage::

    python bench/oracle_anatomy.py            # about 10 s

Prints the tables and writes ``bench/results/oracle_anatomy.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DOCS_LOG = Path(__file__).resolve().parents[1] / "docs" / "results" / "evaluation" / "points.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, default=DOCS_LOG, help="the evaluation's point log")
    parser.add_argument("--noise-log", type=Path, default=None,
                        help="bench/protocol_noise.py's point log (default: the one under work_dirs/protocol_noise)")
    parser.add_argument("--volumes", type=Path, default=Path("work_dirs/evaluate/volumes"),
                        help="dmic evaluate's volume folder: compares the segmenter's CTU mask with the label's")
    parser.add_argument("--out", type=Path, default=RESULTS / "oracle_anatomy.json")
    args = parser.parse_args(argv)

    import pandas as pd

    from dmic_core.methods.registry import ANCHOR
    from dmic_core.assets import ASSETS_DIR
    from dmic_core.defaults import DEFAULT_AGENTS
    from dmic_core.protocol.methods import ORACLE, ORACLE_EXTENDED, TWO_LEVEL, TWO_LEVEL_BG, TWO_LEVEL_EXT, TWO_LEVEL_EXT_BG
    from dmic_core.protocol.run import DEFAULT_AGENTS_CURVE, ON_LABEL, _agents_sha, row_key
    from dmic_core.protocol.summary import choose_curve, per_volume_bd
    from dmic_core.runs import PointLog

    if not args.log.is_file():
        raise SystemExit(f"no evaluation point log at {args.log}")
    points = pd.DataFrame(list(PointLog(args.log, row_key)))
    keep = ["volume", "curve", "method", "setting", "bpp", "miou", "psnr_hu"]
    oracle_volumes = sorted(set(points.volume[points.curve == ORACLE]) & set(points.volume[points.curve == ORACLE_EXTENDED]))
    if not oracle_volumes:
        raise SystemExit(f"{args.log} has no volume with both oracles")
    pts = points[points.volume.isin(oracle_volumes)]
    parts = [pts[pts.curve.isin([ANCHOR, ORACLE, ORACLE_EXTENDED, TWO_LEVEL, TWO_LEVEL_EXT])][keep]]
    # the default agents' current checkpoint only (the log also keeps a replaced default's points)
    default = DEFAULT_AGENTS_CURVE
    default_sha = _agents_sha(str(ASSETS_DIR / DEFAULT_AGENTS))
    on_label = default + ON_LABEL  # the same agents with the label as their mask
    parts.append(pts[pts.curve.isin([default, on_label]) & (pts.agents_sha == default_sha)][keep])
    pair_names: dict[str, tuple[str, int, int]] = {}
    for (curve, fg, bg), group in pts[pts.curve.isin([ORACLE, ORACLE_EXTENDED])].groupby(["curve", "fg", "bg"]):
        name = f"pair fg{int(fg):+d} bg{int(bg):+d}"
        pair_names[name] = (curve, int(fg), int(bg))
        parts.append(group[keep].assign(curve=name, method=name))

    noise_log = args.noise_log or _noise_log()
    bonus_name = f"{ANCHOR} 16-point envelope"
    if noise_log is not None and noise_log.is_file():
        shifted = pd.DataFrame(list(PointLog(noise_log, row_key)))
        shifted = shifted[shifted.volume.isin(oracle_volumes)]
        anchor = pts[pts.curve == ANCHOR][keep]
        parts.append(pd.concat([anchor, shifted[keep]]).assign(curve=bonus_name, method=bonus_name))
    table = per_volume_bd(pd.concat(parts, ignore_index=True))
    rate = table.pivot(index="volume", columns="method", values="bd_rate_pct")

    pairs = [n for n in pair_names if n in rate.columns]
    paper_pairs = [n for n in pairs if pair_names[n][0] == ORACLE]
    # the project's selection rule (most volumes with a BD, then the paired mean), and the plain mean
    best_paper, _ = choose_curve(table, paper_pairs)
    best_any, _ = choose_curve(table, pairs)
    best_by_mean = min(pairs, key=lambda n: rate[n].mean())
    rows = []
    for curve in dict.fromkeys([ORACLE, ORACLE_EXTENDED, *sorted(pairs, key=lambda n: pair_names[n]),
                                TWO_LEVEL, TWO_LEVEL_EXT, default, on_label, bonus_name]):
        if curve not in rate.columns:
            continue
        col = rate[curve]
        rows.append({"curve": curve, "mean_pct": _f(col.mean()), "volumes_with_bd": int(col.notna().sum()),
                     **{v: _f(col.get(v)) for v in oracle_volumes}})
    per_curve = pd.DataFrame(rows).set_index("curve")

    def paired(a: str, b: str) -> dict:
        if a not in rate.columns or b not in rate.columns:
            return {"a": a, "b": b, "volumes": 0, "mean_pp": None}
        d = (rate[a] - rate[b]).dropna()
        return {"a": a, "b": b, "volumes": int(d.size), "mean_pp": _f(d.mean()),
                "min_pp": _f(d.min()), "max_pp": _f(d.max())}

    parts_out = {
        "search over pairs (paper oracle minus its best fixed pair)": paired(ORACLE, best_paper),
        "search over pairs (extended oracle minus the best fixed pair)": paired(ORACLE_EXTENDED, best_any),
        "search over pairs (paper oracle minus the pair with the lowest plain mean)": paired(ORACLE, best_by_mean),
        "search over pairs (extended oracle minus the pair with the lowest plain mean)": paired(ORACLE_EXTENDED, best_by_mean),
        "envelope bonus of one method (16-point anchor against the 8-point anchor)": _spread(rate, bonus_name),
        "default agents minus the label-free two-level rule of their space": paired(default, TWO_LEVEL),
        "mask, default agents (on the label minus on the segmenter's mask)": paired(on_label, default),
        # the label-free rules against their ground-truth twins: what the segmenter's mask costs
        "mask (fg 0 / bg +8 on the label minus on the segmenter's mask)": paired(f"pair fg+0 bg{TWO_LEVEL_BG:+d}", TWO_LEVEL),
        "mask (fg 0 / bg +12 on the label minus on the segmenter's mask)": paired(f"pair fg+0 bg{TWO_LEVEL_EXT_BG:+d}",
                                                                                   TWO_LEVEL_EXT),
    }
    ctu = _ctu_masks(args.volumes, oracle_volumes) if args.volumes is not None else None
    with pd.option_context("display.float_format", "{:+.1f}".format, "display.width", 200,
                           "display.max_columns", 30):
        print(per_curve.to_string())
    print(json.dumps(parts_out, indent=1))
    if ctu:
        print(pd.DataFrame(ctu["per_volume"]).to_string(index=False, float_format="{:.3f}".format))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/oracle_anatomy.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "log": _rel(args.log), "noise_log": None if noise_log is None else _rel(noise_log),
        "volumes": oracle_volumes, "best_paper_pair": best_paper, "best_pair": best_any,
        "best_pair_by_mean": best_by_mean,
        "note": ("best pairs are chosen on these same volumes (choose_curve: most volumes with a BD, then "
                 "the paired mean; or the plain mean): an upper reading of one fixed pair, not a method"),
        "parts": parts_out, "ctu_masks": ctu,
        "per_curve": json.loads(per_curve.reset_index().to_json(orient="records")),
    }, indent=1) + "\n")
    return 0


def _ctu_masks(folder: Path, names: list[str]) -> dict | None:
    """Foreground CTUs of the segmenter's mask of each original slab against those of its label:
    the label's CTUs the mask misses (coded as background) and the mask's CTUs without label
    (coded as foreground for nothing)."""
    import numpy as np

    from dmic_core.io import load_label, load_volume
    from dmic_core.maps import ctu_agreement
    from dmic_core.protocol.volumes import evaluation_volumes
    from dmic_core.segmentation import load_segmenter

    if not folder.is_dir():
        return None
    segmenter = load_segmenter("builtin")
    rows = []
    for vol in evaluation_volumes(folder, real_ct=False):
        if vol.name not in names or vol.label is None:
            continue
        image = load_volume(vol.image)
        label = load_label(vol.label, like=image)[slice(*vol.slices)]
        image = image.slab(*vol.slices)
        rows.append({"volume": vol.name, **ctu_agreement(segmenter.segment(image) > 0, label > 0)})
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "volume"} if rows else {}
    return {"per_volume": rows, "mean": means}


def _spread(rate, curve: str) -> dict:
    """Mean, range and count of one curve's BD-rates (a curve scored against the anchor itself)."""
    if curve not in rate.columns:
        return {"curve": curve, "volumes": 0, "mean_pp": None}
    col = rate[curve].dropna()
    return {"curve": curve, "volumes": int(col.size), "mean_pp": _f(col.mean()), "min_pp": _f(col.min()),
            "max_pp": _f(col.max())}


def _noise_log() -> Path | None:
    found = sorted(Path("work_dirs/protocol_noise").glob("*/points.jsonl"))
    return found[0] if found else None


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _f(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else round(x, 2)


if __name__ == "__main__":
    raise SystemExit(main())
