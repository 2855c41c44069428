"""Label-free rules that clean the segmenter's mask before it becomes the protected region (issue 13).

Every method without a label protects the CTUs the segmenter marks in the original. That mask
costs the protocol's methods about 10-13 BD-rate points against the same rules and agents given
the label (``bench/oracle_anatomy.py``): it marks CTUs without any vessel (coded as foreground
for nothing) and misses some that hold one. This bench runs methods on the mask after a rule,
beside the same methods on the plain mask and constant-QP HEVC, on *validation* phantoms only (it
refuses evaluation and test seeds, so whatever it chooses can later be reported on the protocol):

* ``gate:P``: keep the mask only in CTUs (per frame) whose peak vessel probability reaches ``P``.
  On validation phantoms about a third of the mask's CTUs without label peak below 0.9, against
  under 1% of the CTUs that hold label.
* ``components:N``: drop the mask's 3-D connected components of fewer than ``N`` voxels: the false
  positives are mostly small isolated blobs, the coronary tree a few large components.
* ``model:PATH``: the mask of another segmenter's weights file (``dmic segment-train`` output) as the
  protected region, while the protocol's scorer stays the shipped model: whether another vessel
  model's CTU mask is the better region, with the diagnosis task unchanged.

Usage::

    python bench/roi_gate.py --data work_dirs/agents_train/phantoms --seeds 6008,6000,6020,6012,6018,6013 \\
        --roi gate:0.9 --methods two_level_ext,dmic --workers 2

``--slabs`` pools every labelled volume's curves over three 33-frame slabs (the protocol's slab and
the 33 frames below and above it), as ``dmic evaluate --slabs`` does: a rule's mask is made once on
the whole volume, and each slab protects its part of it.

Prints the per-volume BD-rates and means and writes ``bench/results/roi_gate.json`` (point log
under ``--work``, so a rerun only adds what is missing). A rule chosen that way is then reported
on the protocol's evaluation volumes with ``--evaluation --work work_dirs/evaluate`` (the plain
curves come from the evaluation's own log; only the rule's points are coded)::

    python bench/roi_gate.py --evaluation --work work_dirs/evaluate --roi components:200 \\
        --methods two_level,dmic --workers 2 --out bench/results/roi_components_evaluation.json"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: sub-folder of --work that holds the rules' points (a point log per fingerprint, as the runner's)
VARIANTS = "roi_variants"


def parse_rule(text: str) -> tuple[str, float | str]:
    """``gate:0.9`` (keep CTUs whose peak vessel probability reaches 0.9), ``components:50``
    (drop 3-D connected components under 50 voxels) or ``model:PATH`` (another weights file's mask)."""
    kind, _, value = text.partition(":")
    if kind not in ("gate", "components", "model") or not value:
        raise SystemExit(f"--roi wants gate:P, components:N or model:PATH, got {text!r}")
    if kind == "model":
        if not Path(value).is_file():
            raise SystemExit(f"--roi model:{value}: no such weights file")
        return kind, value
    return kind, float(value)


def rule_tag(kind: str, value: float | str) -> str:
    if kind == "model":
        return f"m-{Path(str(value)).stem}"
    return f"{'gate' if kind == 'gate' else 'cc'}{value:g}"


def filtered_roi(image: str, kind: str, value: float | str, out: Path) -> Path:
    """Write the segmenter's mask of ``image`` after one rule (:func:`parse_rule`), once.

    A JSON file beside it records the image, the rule and the weights' hash; a later run that would
    reuse the file with other weights stops instead of scoring points against a stale region."""
    from dmic_core.assets import sha256
    from dmic_core.io import load_volume
    from dmic_core.io.writers import save_nifti
    from dmic_core.maps import drop_small_components, gate_ctus_by_confidence
    from dmic_core.segmentation import load_segmenter
    from dmic_core.segmentation.config import named_weights_path

    weights = Path(value) if kind == "model" else named_weights_path("builtin")
    facts = {"image": str(Path(image).resolve()), "rule": f"{kind}:{value}", "weights_sha256": sha256(weights)}
    stamp = out.with_name(out.name.replace(".nii.gz", ".json"))
    if out.is_file():
        if not stamp.is_file():  # made before ROI files carried their facts: the weights it names now
            stamp.write_text(json.dumps(facts, indent=1) + "\n")
        elif json.loads(stamp.read_text()) != facts:
            raise SystemExit(f"{out} was made from other weights or another image than now ({stamp}); "
                             f"remove it and its points under {out.parent.parent / VARIANTS} to redo them")
        return out
    volume = load_volume(image)
    seg = load_segmenter(weights if kind == "model" else "builtin")
    if kind == "model":  # another model's own mask, at its own threshold
        mask = seg.segment(volume)
    elif kind == "gate":
        mask = gate_ctus_by_confidence(seg.segment(volume), seg.probabilities(volume), value)
    else:
        mask = drop_small_components(seg.segment(volume), int(value))
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = save_nifti(volume, mask, out)
    stamp.write_text(json.dumps(facts, indent=1) + "\n")
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder with phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--seeds", help="comma list of validation phantom seeds")
    parser.add_argument("--evaluation", action="store_true",
                        help="report rules already chosen on validation on the protocol's evaluation volumes "
                             "instead (with --work work_dirs/evaluate the plain curves come from its log); "
                             "never choose a rule from this mode's output")
    parser.add_argument("--roi", action="append", default=None, metavar="RULE",
                        help="a rule applied to the segmenter's mask, repeatable: gate:P (keep CTUs whose peak "
                             "vessel probability reaches P), components:N (drop 3-D components under N voxels) or "
                             "model:PATH (another segmenter weights file's mask; the scorer stays the shipped "
                             "model); default gate:0.9")
    parser.add_argument("--methods", default="two_level_ext,dmic", help="protocol methods to run on both masks")
    parser.add_argument("--agents", default="assets/agents_dmic.pt", help="checkpoint of the dmic curve")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/roi_gate"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slabs", action="store_true",
                        help="pool every labelled volume's curves over three 33-frame slabs (its slab and the 33 "
                             "frames below and above, dmic_core.protocol.slabs): a third of one slab's noise")
    parser.add_argument("--out", type=Path, default=RESULTS / "roi_gate.json")
    args = parser.parse_args(argv)

    import pandas as pd

    from dmic_core.datasets.seeds import selection_seeds
    from dmic_core.methods.registry import ANCHOR
    from dmic_core.protocol.run import AGENTS, ProtocolPlan, agents_curve, current_rows, run_protocol
    from dmic_core.protocol.slabs import pooled_protocol_rows, slab_plans
    from dmic_core.protocol.summary import per_volume_bd, summarise
    from dmic_core.protocol.volumes import evaluation_volumes, phantom_volume

    if args.evaluation:
        plain = evaluation_volumes(args.work / "volumes")
        # the protocol's curve name, so that the evaluation log's points of these agents are reused
        agents = {agents_curve(Path(args.agents).stem): args.agents}
    else:
        if args.data is None or args.seeds is None:
            raise SystemExit("--data and --seeds are needed (or --evaluation)")
        try:
            seeds = selection_seeds(args.seeds)
        except ValueError as exc:
            raise SystemExit(str(exc)) from exc
        plain = [phantom_volume(s, args.data) for s in seeds]
        agents = {"dmic:agents": args.agents}
    methods = [m for m in args.methods.split(",") if m]
    rules = [parse_rule(r) for r in (args.roi or ["gate:0.9"])]
    plan_plain = ProtocolPlan(plain, agents, oracle_volumes=0, methods=(ANCHOR, *methods))
    start = time.perf_counter()
    curves = {ANCHOR, *(m for m in methods if m != AGENTS), *agents}

    def rows_of(plan: ProtocolPlan, work: Path) -> list[dict]:
        """``plan``'s rows of ``curves`` (not the log's other curves), pooled over three slabs with --slabs."""
        def run(p: ProtocolPlan) -> list[dict]:
            return [r for r in current_rows(run_protocol(p, work, workers=args.workers), p) if r["curve"] in curves]
        rows = run(plan)
        if not args.slabs:
            return rows
        return pooled_protocol_rows(rows, {key: run(moved) for key, moved in slab_plans(plan, work).items()})

    rows = rows_of(plan_plain, args.work)
    for kind, value in rules:
        tag = rule_tag(kind, value)
        variant = []
        for vol in plain:
            # a second path to the same image: the runner tells volumes apart by their image file
            link = args.work / "volumes" / f"{vol.name}+{tag}.img.nii.gz"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(vol.image).resolve())
            roi = filtered_roi(vol.image, kind, value, args.work / "volumes" / f"{vol.name}+{tag}.roi.nii.gz")
            variant.append(type(vol)(f"{vol.name}+{tag}", str(link), vol.label, vol.slices, vol.reference, str(roi)))
        plan = ProtocolPlan(variant, agents, oracle_volumes=0, methods=tuple(methods))
        # a log of their own: the plain curves' log (with --evaluation, the protocol's) holds only
        # the volumes its report reads
        for row in rows_of(plan, args.work / VARIANTS):  # the variant's curves join their plain volume, renamed
            rows.append({**row, "volume": row["volume"].split("+")[0], "curve": f"{row['curve']}+{tag}"})
    points = pd.DataFrame(rows)
    per_volume = per_volume_bd(points)
    summary = summarise(per_volume)
    table = per_volume.pivot(index="method", columns="volume", values="bd_rate_pct")
    print(table.round(1).to_string())
    print(summary[["curve", "volumes", "bd_rate_mean", "bd_rate_low", "bd_rate_high", "bd_miou_mean"]].to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/roi_gate.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "volumes_role": "evaluation" if args.evaluation else "validation", "pooled_slabs": bool(args.slabs),
        "volumes": [v.as_dict() for v in plain], "rules": [f"{k}:{v}" if k == "model" else f"{k}:{v:g}" for k, v in rules],
        "seconds": round(time.perf_counter() - start, 1),
        "per_volume": json.loads(per_volume.to_json(orient="records")),
        "summary": json.loads(summary.to_json(orient="records")),
    }, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
