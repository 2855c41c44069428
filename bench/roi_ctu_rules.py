"""What each label-free mask rule does to the CTUs the methods protect, on validation phantoms (issue 13).

Every label-free method protects the CTUs the segmenter marks in the original. With the default
agents' foreground offsets capped at 0, a CTU the mask marks without any vessel in it is coded at
the vessel's quality for nothing, and a vessel CTU the mask misses is coded at the background's.
This bench codes nothing: per rule it counts, over each phantom's three 33-frame slabs (the
protocol's slab and the 33 frames below and above, :mod:`dmic_core.protocol.slabs`), the share of
the rule's CTUs without label (``false``) and the share of the label's CTUs it misses
(``missed``), so that the rules worth coding (``bench/roi_gate.py``) can be picked before any
encode. It refuses evaluation and test seeds.

Rules: ``plain`` (the segmenter's mask), ``gate:P`` (keep CTUs whose peak vessel probability
reaches ``P``), ``components:N`` (drop 3-D components under ``N`` voxels), ``components:N+gate:P``
and ``components:N+dilate:R`` (then grown by ``R`` pixels in-plane), each on the whole volume; and
``slab components:N`` / ``slab components:N+ends`` on each 33-frame slab's own mask, as an agents
checkpoint applies it to the clip it is given (``+ends``: components touching the first or last
frame are kept, :func:`~dmic_core.maps.drop_small_components`).

With ``--flip`` it counts instead the plain mask and the masks of flip-averaged probabilities
(:mod:`dmic_core.segmentation.flips`): ``flip:T`` (the scan and its left-right mirror image) and
``flip2:T`` (and its anterior-posterior one), thresholded at ``T``. ``bench/roi_rule_real_ct.py
--flip`` measures what the same masks keep of the real CT's.

Usage::

    python bench/roi_ctu_rules.py --data work_dirs/agents_train/phantoms \\
        --seeds 6003,6021,6019,6004,6010,6011,6027,6002,6026,6006,6016,6023
    python bench/roi_ctu_rules.py --flip --out bench/results/roi_ctu_rules_flip.json --data ... --seeds ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
COMPONENTS = (50, 100, 200, 500, 1000, 2000)
GATES = (0.8, 0.9, 0.95, 0.99)
DILATIONS = (2, 4, 8)
SLAB_COMPONENTS = (200, 500, 1000)
#: thresholds of the flip-averaged probabilities (``--flip``)
FLIP_THRESHOLDS = (0.5, 0.7)
#: ``--flip`` rule name -> in-plane axes mirrored (:func:`~dmic_core.segmentation.flips.flip_averaged_probabilities`)
FLIP_AXES = {"flip": (2,), "flip2": (1, 2)}


def rule_masks(mask: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Every rule's mask of one volume."""
    from dmic_core.maps import drop_small_components, gate_ctus_by_confidence

    out = {"plain": (mask > 0).astype(np.uint8)}
    for n in COMPONENTS:
        out[f"components:{n}"] = drop_small_components(mask, n)
    for p in GATES:
        out[f"gate:{p:g}"] = gate_ctus_by_confidence(mask, probabilities, p)
    for n in (200, 500):
        out[f"components:{n}+gate:0.9"] = gate_ctus_by_confidence(out[f"components:{n}"], probabilities, 0.9)
    for n in (200, 500):  # after every gate rule: the table's order
        for r in DILATIONS:
            out[f"components:{n}+dilate:{r}"] = dilate(out[f"components:{n}"], r)
    return out


def flip_masks(segmenter, volume) -> dict[str, np.ndarray]:
    """Masks of the flip-averaged probabilities, every ``FLIP_AXES`` x ``FLIP_THRESHOLDS``."""
    from dmic_core.segmentation.flips import flip_averaged_probabilities

    out = {}
    for name, axes in FLIP_AXES.items():
        averaged = flip_averaged_probabilities(segmenter, volume, axes)
        for t in FLIP_THRESHOLDS:
            out[f"{name}:{t:g}"] = (averaged >= t).astype(np.uint8)
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in-plane (a square per frame): vessel CTUs the segmenter
    just misses at a CTU border."""
    from scipy import ndimage

    return ndimage.maximum_filter((mask > 0).astype(np.uint8), size=(1, 2 * radius + 1, 2 * radius + 1))


def validation_seeds(text: str) -> list[int]:
    """``--seeds``: seeds that may choose a setting (never evaluation or test seeds)."""
    from dmic_core.datasets.seeds import selection_seeds

    try:
        return selection_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with phantom-<seed>.img/.label.nii.gz")
    parser.add_argument("--seeds", required=True, type=validation_seeds, help="comma list of validation phantom seeds")
    parser.add_argument("--flip", action="store_true",
                        help="count the plain mask and the flip-averaged masks instead of the other rules")
    parser.add_argument("--out", type=Path, default=RESULTS / "roi_ctu_rules.json")
    args = parser.parse_args(argv)

    from dmic_core.io import load_label, load_volume
    from dmic_core.maps import ctu_agreement, drop_small_components
    from dmic_core.protocol.slabs import SLAB_OFFSETS, moved_slab
    from dmic_core.protocol.volumes import phantom_volume
    from dmic_core.segmentation import load_segmenter

    segmenter = load_segmenter("builtin")
    start = time.perf_counter()
    rows = []
    for seed in args.seeds:
        vol = phantom_volume(seed, args.data)
        volume = load_volume(vol.image)
        label = load_label(vol.label, like=volume) > 0
        slabs = [slice(*moved_slab(vol.slices, offset, volume.n_frames)) for offset in (0, *SLAB_OFFSETS)]
        if args.flip:
            masks = {"plain": segmenter.segment(volume), **flip_masks(segmenter, volume)}
        else:
            masks = rule_masks(segmenter.segment(volume), segmenter.probabilities(volume))
        plain = masks["plain"]
        for n in () if args.flip else SLAB_COMPONENTS:
            # the rule on each slab's own mask, as an agents checkpoint applies it to the clip it is given
            masks[f"components:{n}+ends"] = drop_small_components(plain, n, keep_ends=True)
            masks[f"slab components:{n}"] = [drop_small_components(plain[s], n) for s in slabs]
            masks[f"slab components:{n}+ends"] = [drop_small_components(plain[s], n, keep_ends=True) for s in slabs]
        for rule, mask in masks.items():
            parts = mask if isinstance(mask, list) else [mask[s] for s in slabs]
            agreement = [ctu_agreement(part, label[s]) for part, s in zip(parts, slabs)]
            ours = sum(a["mask_ctus"] for a in agreement)
            theirs = sum(a["reference_ctus"] for a in agreement)
            rows.append({
                "volume": vol.name, "rule": rule,
                # CTU-weighted over the three slabs (every slab has the same number of CTUs)
                "false": sum(a["mask_ctus_without_reference"] * a["mask_ctus"] for a in agreement) / max(ours, 1e-12),
                "missed": sum(a["reference_ctus_missed"] * a["reference_ctus"] for a in agreement) / max(theirs, 1e-12),
                "ctus_vs_label": ours / max(theirs, 1e-12),
                "missed_worst_slab": max(a["reference_ctus_missed"] for a in agreement),
            })
        print(f"[roi-ctu] {vol.name} done ({time.perf_counter() - start:.0f} s)", flush=True)

    import pandas as pd

    table = pd.DataFrame(rows)
    summary = table.groupby("rule", sort=False)[["false", "missed", "ctus_vs_label"]].mean()
    summary["missed_worst"] = table.groupby("rule", sort=False)["missed"].max()
    summary["missed_worst_slab"] = table.groupby("rule", sort=False)["missed_worst_slab"].max()
    print((summary * 100).round(1).rename(columns=lambda c: c + " %").to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python bench/roi_ctu_rules.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "volumes_role": "validation", "seconds": round(time.perf_counter() - start, 1),
        "per_volume": rows, "summary": json.loads(summary.reset_index().to_json(orient="records")),
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
