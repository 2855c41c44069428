"""Carry the evaluation protocol's points over to a plan whose real-CT slab moved.

The protocol's point log is keyed by a fingerprint that covers every volume's slab
(:func:`dmic_core.protocol.run.fingerprint`), so moving the real CT's slab (2026-12-01: from
frames 60-93, inside the segmenters' real-texture training frames, to 100-133, held out) starts
a new log. The twelve phantoms are coded exactly as before (same files, slabs, models, coding),
so their points are copied into the new log instead of being recoded; only the real CT is coded
again by the next ``dmic evaluate``. It codes nothing and chooses nothing.

Usage::

    python bench/carry_points.py --old-real-ct-slices 60:93 [--work work_dirs/evaluate]

Prints the two fingerprints and how many rows were copied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-real-ct-slices", required=True, metavar="A:B",
                        help="the real CT's slab of the plan whose log is carried over")
    parser.add_argument("--work", type=Path, default=Path("work_dirs/evaluate"))
    args = parser.parse_args(argv)

    from dmic_core.errors import DmicInputError
    from dmic_core.io import load_volume
    from dmic_core.protocol.run import ProtocolPlan, carry_over_points, fingerprint, log_path
    from dmic_core.protocol.volumes import evaluation_volumes
    from dmic_core.volume import parse_slices

    new = ProtocolPlan(evaluation_volumes(args.work / "volumes"))
    real = next((v for v in new.volumes if v.label is None), None)
    if real is None:
        raise SystemExit("the plan has no real CT (is DMIC_SHARED_DATA set?)")
    try:
        old_slab = parse_slices(args.old_real_ct_slices, load_volume(real.image).n_frames, real.image)
    except DmicInputError as exc:
        raise SystemExit(str(exc)) from None
    old = ProtocolPlan([dataclasses.replace(v, slices=old_slab) if v is real else v for v in new.volumes])
    try:
        added = carry_over_points(old, new, args.work)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    print(json.dumps({"old": {"fingerprint": fingerprint(old), "log": str(log_path(old, args.work))},
                      "new": {"fingerprint": fingerprint(new), "log": str(log_path(new, args.work))},
                      "rows_copied": added}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
