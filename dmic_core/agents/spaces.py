"""Action spaces of the two agents: the single source of truth for which QPs they may choose.

The paper (section II-A) fixes them:

* frame-level agent: ``QP_I`` in 14..37; every P frame's QP follows from it by the GOP-8 rule
  (:func:`dmic_core.codecs.qp.dmic_frame_qps`);
* CTU-level agent: a QP offset per 64x64 CTU, from {-2, 0, +2} for a *foreground* CTU (the CTU
  holds mask in that frame, :func:`dmic_core.maps.foreground_ctus`) and from {+2, +4, +6, +8}
  for a background CTU.

The CTU agent has one categorical output over the *union* of both offset sets; the offsets a
CTU may not take are masked out (logit -inf) before sampling, so a foreground CTU never gets
+8 and a background CTU never gets -2.

:data:`EXTENDED` is an opt-in wider space for the "beyond the paper" goal: background offsets up
to +20, foreground down to -4, QP_I 12..42. Absolute paper QPs are not clipped here: what a
codec can apply depends on the coding setup (under the 12-bit full-range task coding, paper QP
= coded QP + 12, so paper QPs up to 63 are codable); pass ``qp_max`` to clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmic_core.codecs.qp import dmic_frame_qps


@dataclass(frozen=True)
class ActionSpace:
    """Frame- and CTU-level action sets.

    Attributes:
        name: ``"paper"`` or ``"extended"`` (recorded in checkpoints and results).
        qp_i: allowed I-frame QPs (paper QPs), ascending.
        fg_offsets: allowed CTU QP offsets of foreground CTUs.
        bg_offsets: allowed CTU QP offsets of background CTUs.
    """

    name: str
    qp_i: tuple[int, ...]
    fg_offsets: tuple[int, ...]
    bg_offsets: tuple[int, ...]

    # ----------------------------------------------------------------------------- frame level
    @property
    def n_frame_actions(self) -> int:
        return len(self.qp_i)

    def qp_i_of(self, action: int | np.ndarray) -> np.ndarray:
        """QP_I of frame-agent action index(es)."""
        return np.asarray(self.qp_i, dtype=np.int32)[np.asarray(action)]

    def frame_action_of(self, qp_i: int) -> int:
        """Action index of a QP_I (ValueError when outside the space)."""
        if qp_i not in self.qp_i:
            raise ValueError(f"QP_I {qp_i} is not in the {self.name} action space "
                             f"{self.qp_i[0]}..{self.qp_i[-1]}")
        return self.qp_i.index(int(qp_i))

    def frame_qps(self, qp_i: int, n_frames: int) -> np.ndarray:
        """Paper QP of every frame for ``qp_i`` (the paper's GOP-8 low-delay-P rule)."""
        return dmic_frame_qps(int(qp_i), n_frames)

    # ------------------------------------------------------------------------------- CTU level
    @property
    def offsets(self) -> tuple[int, ...]:
        """The CTU agent's output categories: the sorted union of both offset sets."""
        return tuple(sorted(set(self.fg_offsets) | set(self.bg_offsets)))

    @property
    def n_ctu_actions(self) -> int:
        return len(self.offsets)

    def offset_of(self, action: np.ndarray) -> np.ndarray:
        """QP offsets of CTU-agent action indices (any shape)."""
        return np.asarray(self.offsets, dtype=np.int32)[np.asarray(action)]

    def ctu_action_of(self, offset: np.ndarray) -> np.ndarray:
        """Action indices of offsets (any shape; every offset must be in :attr:`offsets`)."""
        offset = np.asarray(offset, dtype=np.int32)
        table = np.asarray(self.offsets, dtype=np.int32)
        idx = np.searchsorted(table, offset)
        idx = np.clip(idx, 0, len(table) - 1)
        if not np.all(table[idx] == offset):
            bad = sorted(set(offset[table[idx] != offset].tolist()))
            raise ValueError(f"offsets {bad} are not in the {self.name} CTU action space {self.offsets}")
        return idx.astype(np.int64)

    def valid_offset_table(self) -> np.ndarray:
        """Boolean ``(2, n_ctu_actions)``: row 0 background, row 1 foreground."""
        table = np.zeros((2, self.n_ctu_actions), dtype=bool)
        for j, off in enumerate(self.offsets):
            table[0, j] = off in self.bg_offsets
            table[1, j] = off in self.fg_offsets
        return table

    def ctu_action_mask(self, foreground: np.ndarray) -> np.ndarray:
        """Valid CTU actions: boolean ``foreground.shape + (n_ctu_actions,)``."""
        return self.valid_offset_table()[np.asarray(foreground, dtype=bool).astype(np.int64)]

    def is_valid_offset_map(self, offsets: np.ndarray, foreground: np.ndarray) -> bool:
        """Whether every CTU's offset is allowed for its foreground/background class."""
        offsets = np.asarray(offsets)
        fg = np.asarray(foreground, dtype=bool)
        ok_fg = np.isin(offsets[fg], self.fg_offsets).all()
        ok_bg = np.isin(offsets[~fg], self.bg_offsets).all()
        return bool(ok_fg and ok_bg)

    def project_offsets(self, wanted: np.ndarray, foreground: np.ndarray) -> np.ndarray:
        """Nearest allowed offset of every CTU (ties towards the lower offset, i.e. better quality)."""
        wanted = np.asarray(wanted, dtype=np.float64)
        fg = np.asarray(foreground, dtype=bool)
        out = np.empty(wanted.shape, dtype=np.int32)
        for cls_mask, allowed in ((fg, self.fg_offsets), (~fg, self.bg_offsets)):
            a = np.asarray(sorted(allowed), dtype=np.float64)
            dist = np.abs(wanted[cls_mask][..., None] - a)
            out[cls_mask] = a[np.argmin(dist, axis=-1)].astype(np.int32)
        return out

    def restricted(self, fg_offsets: tuple[int, ...]) -> "ActionSpace":
        """This space with foreground CTUs limited to ``fg_offsets`` (a subset of :attr:`fg_offsets`),
        named ``<name>/fg<offsets>``. The CTU agent's output categories must stay the same, so a
        checkpoint of this space still fits its network; the removed choices are masked out."""
        fg = tuple(sorted(int(o) for o in fg_offsets))
        if not fg or not set(fg) <= set(self.fg_offsets):
            raise ValueError(f"foreground offsets {list(fg)} are not a non-empty subset of the {self.name} "
                             f"space's {list(self.fg_offsets)}")
        out = ActionSpace(f"{self.name}/fg{','.join(f'{o:+d}' for o in fg)}", self.qp_i, fg, self.bg_offsets)
        if out.offsets != self.offsets:
            raise ValueError(f"restricting the foreground to {list(fg)} would drop a CTU output category "
                             f"({sorted(set(self.offsets) - set(out.offsets))}): the agents' network would no longer fit")
        return out

    # ------------------------------------------------------------------------------ both levels
    def qp_map(self, qp_i: int, offsets: np.ndarray, qp_max: int | None = None) -> np.ndarray:
        """Absolute paper QP of every CTU ``(F, rows, cols)`` (clipped to ``0..qp_max`` if given)."""
        offsets = np.asarray(offsets, dtype=np.int32)
        base = self.frame_qps(qp_i, offsets.shape[0])[:, None, None]
        out = base + offsets
        return (out if qp_max is None else np.clip(out, 0, qp_max)).astype(np.int32)

    def reachable_qps(self) -> tuple[int, ...]:
        """Every absolute paper QP a CTU can get in this space."""
        qps: set[int] = set()
        for qp_i in self.qp_i:
            for f in set(dmic_frame_qps(qp_i, 9).tolist()):
                for off in self.offsets:
                    qps.add(int(f + off))
        return tuple(sorted(qps))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "qp_i": list(self.qp_i), "fg_offsets": list(self.fg_offsets),
                "bg_offsets": list(self.bg_offsets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ActionSpace":
        return cls(str(d["name"]), tuple(int(v) for v in d["qp_i"]),
                   tuple(int(v) for v in d["fg_offsets"]), tuple(int(v) for v in d["bg_offsets"]))


#: The paper's action spaces (section II-A).
PAPER = ActionSpace(
    name="paper",
    qp_i=tuple(range(14, 38)),
    fg_offsets=(-2, 0, 2),
    bg_offsets=(2, 4, 6, 8),
)

#: Opt-in wider space for larger savings: coarser background, slightly finer foreground.
EXTENDED = ActionSpace(
    name="extended",
    qp_i=tuple(range(12, 43)),
    fg_offsets=(-4, -2, 0, 2),
    bg_offsets=(2, 4, 6, 8, 10, 12, 14, 16, 18, 20),
)

SPACES: dict[str, ActionSpace] = {PAPER.name: PAPER, EXTENDED.name: EXTENDED}


def get_space(name: str | ActionSpace) -> ActionSpace:
    """An action space by name: ``"paper"``, ``"extended"``, or one of them restricted
    (:meth:`ActionSpace.restricted`, e.g. ``"paper/fg-2,+0"``)."""
    if isinstance(name, ActionSpace):
        return name
    base, _, fg = name.partition("/fg")
    try:
        space = SPACES[base]
    except KeyError:
        raise ValueError(f"unknown action space {name!r}; known: {sorted(SPACES)}") from None
    return space.restricted(tuple(int(o) for o in fg.split(","))) if fg else space
