"""Hand-crafted CTU QP maps (paper Fig. 2a): the CTU's QP offset as a fixed function of its mask ratio.

A background CTU (mask ratio ``r = 0`` in that frame) gets the coarse offset
``bg = min_bg + strength * (max_bg - min_bg)`` (``+8`` at strength 1 in the paper space). A
foreground CTU gets a *continuous* offset over the whole foreground range, from the coarsest
foreground offset for a CTU that barely touches the mask to the finest for a dense one,

    dQP(r) = max_fg - (max_fg - min_fg) * g(x),   x = min(1, r / ratio_saturation),

then each CTU is rounded to the nearest offset its class may take
(:meth:`ActionSpace.project_offsets`). ``dQP`` never increases with ``r``: more mask, finer
quantisation. Shapes ``g: [0, 1] -> [0, 1]``:

* ``linear``  ``g = x``
* ``exp``     ``g = (e^{3x} - 1) / (e^3 - 1)``  (convex: only dense CTUs get fine QPs)
* ``square``  ``g = x^2``
* ``log``     ``g = log(1 + 9x) / log(10)``     (concave: any vessel gets fine QPs)
* ``sqrt``    ``g = sqrt(x)``

``ratio_saturation`` defaults to the 90th percentile of the volume's own foreground CTU ratios
(the densest tenth of its mask CTUs count as full), so the shapes spread over the CTUs the mask
really has: coronary CTUs hold 0.5-15% vessel, an aorta mask's CTUs far more. An earlier
version spread ``g`` over ``[min_fg, max_bg]`` with a fixed saturation of 0.1; coronary CTUs
then all rounded to the same foreground offset and linear, exp and square gave bit-identical
maps (issue 13). The frame QPs come from QP_I by the same GOP-8 rule as the agents'; a rate
curve of a hand-crafted method is a sweep over QP_I at fixed ``strength``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from dmic_core.agents.spaces import PAPER, ActionSpace, get_space
from dmic_core.maps import ctu_mask_ratio

SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "exp": lambda x: np.expm1(3.0 * x) / np.expm1(3.0),
    "square": lambda x: x * x,
    "log": lambda x: np.log1p(9.0 * x) / np.log(10.0),
    "sqrt": np.sqrt,
}

HANDCRAFTED = tuple(SHAPES)

#: Percentile of the foreground CTUs' mask ratios that counts as saturated (x = 1) by default.
SATURATION_PERCENTILE = 90.0


def saturation_of(ratio: np.ndarray) -> float:
    """Default ``ratio_saturation``: the :data:`SATURATION_PERCENTILE` percentile of the positive
    ratios (1 when there are none)."""
    positive = np.asarray(ratio, dtype=np.float64)
    positive = positive[positive > 0]
    return float(np.percentile(positive, SATURATION_PERCENTILE)) if positive.size else 1.0


def offset_curve(ratio: np.ndarray, method: str, strength: float = 1.0,
                 ratio_saturation: float | None = None,
                 space: ActionSpace | str = PAPER) -> np.ndarray:
    """Unquantised offset ``dQP(r)`` (float) of mask ratios ``ratio`` (any shape): the background
    offset where ``r = 0``, the foreground curve elsewhere."""
    if method not in SHAPES:
        raise ValueError(f"unknown hand-crafted method {method!r}; known: {list(SHAPES)}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    ratio = np.asarray(ratio, dtype=np.float64)
    if ratio_saturation is None:
        ratio_saturation = saturation_of(ratio)
    if ratio_saturation <= 0:
        raise ValueError("ratio_saturation must be positive")
    space = get_space(space)
    lo, hi = float(min(space.fg_offsets)), float(max(space.fg_offsets))
    bg = float(min(space.bg_offsets)) + strength * (float(max(space.bg_offsets)) - float(min(space.bg_offsets)))
    x = np.clip(ratio / ratio_saturation, 0.0, 1.0)
    return np.where(ratio > 0, hi - (hi - lo) * SHAPES[method](x), bg)


def handcrafted_offsets(mask: np.ndarray, method: str, strength: float = 1.0,
                        ratio_saturation: float | None = None,
                        space: ActionSpace | str = PAPER) -> np.ndarray:
    """CTU QP offsets ``(F, rows, cols)`` of the hand-crafted ``method`` for task mask ``mask``."""
    space = get_space(space)
    ratio = ctu_mask_ratio(mask)
    wanted = offset_curve(ratio, method, strength, ratio_saturation, space)
    return space.project_offsets(wanted, ratio > 0)
