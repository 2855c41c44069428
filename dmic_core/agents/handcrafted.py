"""Hand-crafted CTU QP maps (paper Fig. 2a): the CTU's QP offset as a fixed function of its mask ratio.

For a CTU with mask ratio ``r`` (fraction of its pixels in the task mask, per frame), with
``x = min(1, r / ratio_saturation)`` and a shape ``g: [0, 1] -> [0, 1]`` increasing,

    dQP(r) = hi - (hi - lo) * g(x),   lo = min foreground offset,
                                      hi = lo + strength * (max background offset - lo),

then quantised to the nearest offset the CTU may take (foreground set when ``r > 0``, background
set otherwise; :meth:`ActionSpace.project_offsets`). So ``dQP`` never increases with ``r``:
more mask, finer quantisation. Shapes (``k`` fixes the curvature):

* ``linear``  ``g = x``
* ``exp``     ``g = (e^{3x} - 1) / (e^3 - 1)``  (convex: only dense CTUs get fine QPs)
* ``square``  ``g = x^2``
* ``log``     ``g = log(1 + 9x) / log(10)``     (concave: any vessel gets fine QPs)
* ``sqrt``    ``g = sqrt(x)``

The frame QPs come from QP_I by the same GOP-8 rule as the agents'; a rate curve of a
hand-crafted method is a sweep over QP_I at fixed ``strength``.
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

#: Mask ratio at which a CTU counts as fully foreground (coronary CTUs rarely exceed ~10%).
DEFAULT_RATIO_SATURATION = 0.1


def offset_curve(ratio: np.ndarray, method: str, strength: float = 1.0,
                 ratio_saturation: float = DEFAULT_RATIO_SATURATION,
                 space: ActionSpace | str = PAPER) -> np.ndarray:
    """Unquantised offset ``dQP(r)`` (float) of mask ratios ``ratio`` (any shape)."""
    if method not in SHAPES:
        raise ValueError(f"unknown hand-crafted method {method!r}; known: {list(SHAPES)}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if ratio_saturation <= 0:
        raise ValueError("ratio_saturation must be positive")
    space = get_space(space)
    lo = float(min(space.fg_offsets))
    hi = lo + strength * (float(max(space.bg_offsets)) - lo)
    x = np.clip(np.asarray(ratio, dtype=np.float64) / ratio_saturation, 0.0, 1.0)
    return hi - (hi - lo) * SHAPES[method](x)


def handcrafted_offsets(mask: np.ndarray, method: str, strength: float = 1.0,
                        ratio_saturation: float = DEFAULT_RATIO_SATURATION,
                        space: ActionSpace | str = PAPER) -> np.ndarray:
    """CTU QP offsets ``(F, rows, cols)`` of the hand-crafted ``method`` for task mask ``mask``."""
    space = get_space(space)
    ratio = ctu_mask_ratio(mask)
    wanted = offset_curve(ratio, method, strength, ratio_saturation, space)
    return space.project_offsets(wanted, ratio > 0)

