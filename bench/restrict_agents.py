"""Write a checkpoint of existing agents whose foreground CTUs may choose only some of their offsets.

The point logs show the default agents giving vessel CTUs +2 at every lambda from 2 up (the
background +8): a 6-QP contrast where the two-level rule on the label keeps 8, and 3.7 BD-rate
points [1.6, 5.9] below that rule when both are given the label (``bench/slab_pooling.py``,
three slabs pooled). Masking +2 out for foreground CTUs is the smallest change of the policy that
tests this: the networks are untouched, each foreground CTU takes its preferred offset among the
ones left. Whether it helps is for ``bench/select_agents.py`` on validation volumes to say.

Usage::

    python bench/restrict_agents.py --agents assets/agents_dmic.pt --fg-offsets=-2,0 \\
        --out work_dirs/agents_fgcap/agents_dmic_fg_le0.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=Path, required=True, help="agents checkpoint to restrict")
    parser.add_argument("--fg-offsets", required=True, help="comma list: the foreground offsets left (a subset)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from dmic_core.agents.dmic import DMICAgents
    from dmic_core.assets import sha256
    from dmic_core.defaults import repo_relative

    agents = DMICAgents.load(args.agents)
    before = agents.space.name
    try:
        agents.restrict_foreground(tuple(int(o) for o in args.fg_offsets.split(",") if o.strip()))
    except ValueError as exc:
        raise SystemExit(f"{args.agents}: {exc}") from None
    # stored as loaded: float16 weights stay bit-identical to the source checkpoint's
    agents.save(args.out, meta={"restricted_from": {"checkpoint": repo_relative(args.agents),
                                                    "sha256": sha256(args.agents), "space": before}})
    print(f"{args.out}: {before} -> {agents.space.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
