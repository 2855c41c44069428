"""Write a checkpoint of existing agents with a narrower decision: some foreground offsets masked out, or small mask blobs ignored.

The point logs show the default agents giving vessel CTUs +2 at every lambda from 2 up (the
background +8): a 6-QP contrast where the two-level rule on the label keeps 8, and 3.7 BD-rate
points [1.6, 5.9] below that rule when both are given the label (``bench/slab_pooling.py``,
three slabs pooled). Masking +2 out for foreground CTUs is the smallest change of the policy that
tests this: the networks are untouched, each foreground CTU takes its preferred offset among the
ones left. Whether it helps is for ``bench/select_agents.py`` on validation volumes to say.

``--min-component-voxels N`` instead (or as well) makes the agents protect only the mask's 3-D
connected components of at least ``N`` voxels (:meth:`DMICAgents.drop_small_regions`): with vessel
CTUs kept at 0, each CTU the segmenter marks without any vessel costs vessel quality for nothing,
and on validation phantoms most of those CTUs hold only small isolated blobs
(``bench/roi_ctu_rules.py``).

Usage::

    python bench/restrict_agents.py --agents assets/agents_dmic.pt --fg-offsets=-2,0 \\
        --out work_dirs/agents_fgcap/agents_dmic_fg_le0.pt
    python bench/restrict_agents.py --agents assets/agents_dmic.pt --min-component-voxels 500 \\
        --out work_dirs/agents_region/agents_dmic_cc500.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=Path, required=True, help="agents checkpoint to restrict")
    parser.add_argument("--fg-offsets", help="comma list: the foreground offsets left (a subset)")
    parser.add_argument("--min-component-voxels", type=int, default=None,
                        help="protect only the mask's 3-D connected components of at least this many voxels")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.fg_offsets is None and args.min_component_voxels is None:
        raise SystemExit("nothing to change: give --fg-offsets and/or --min-component-voxels")

    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.assets import sha256
    from dmic_core.defaults import repo_relative

    agents = DMICAgents.load(args.agents)
    before, region_before = agents.space.name, agents.min_component_voxels
    try:
        if args.fg_offsets is not None:
            agents.restrict_foreground(tuple(int(o) for o in args.fg_offsets.split(",") if o.strip()))
        if args.min_component_voxels is not None:
            agents.drop_small_regions(args.min_component_voxels)
    except ValueError as exc:
        raise SystemExit(f"{args.agents}: {exc}") from None
    source = {"checkpoint": repo_relative(args.agents), "sha256": sha256(args.agents), "space": before,
              "min_component_voxels": region_before}
    # stored as loaded: float16 weights stay bit-identical to the source checkpoint's; a chain of
    # changes keeps the first source under its own key
    key = "restricted_from" if "restricted_from" not in agents.meta else "changed_from"
    agents.save(args.out, meta={key: source})
    print(f"{args.out}: {before} -> {agents.space.name}, min component {region_before} -> "
          f"{agents.min_component_voxels} voxels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
