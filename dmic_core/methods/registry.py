"""The method registry: every method name anywhere (CLI choices, the app, batches, experiments) is
a key of :data:`REGISTRY`, and :data:`METHOD_NAMES` is ``tuple(REGISTRY)``."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from dmic_core.agents.handcrafted import HANDCRAFTED
from dmic_core.defaults import LAMBDA_GRID, QP_GRID
from dmic_core.methods.anchors import decide_hevc, decide_ratecontrol
from dmic_core.methods.base import Decider, PointSpec
from dmic_core.methods.dmic import decide_dmic
from dmic_core.methods.maps import clip_qp_i, handcrafted_decider

#: Method name -> decider, in display order.
REGISTRY: dict[str, Decider] = {
    "hevc": decide_hevc, "dmic": decide_dmic,
    **{kind: handcrafted_decider(kind) for kind in HANDCRAFTED},
    "ratecontrol": decide_ratecontrol,
}
#: Method names in display order: ``tuple(REGISTRY)``.
METHOD_NAMES: tuple[str, ...] = tuple(REGISTRY)
#: The constant-QP anchor every BD is measured against (rate control targets its rates).
ANCHOR = "hevc"


def get_decider(method: str, extra: Mapping[str, Decider] | None = None) -> Decider:
    """The decider of ``method``; ``extra`` adds methods of a caller's own (benchmarks' reference
    rules) without changing the registry."""
    if extra and method in extra:
        return extra[method]
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_NAMES)}")
    return REGISTRY[method]


def settings_for(method: str, qps: Sequence[float] = QP_GRID, lambdas: Sequence[float] = LAMBDA_GRID) -> list[float]:
    """A method's rate points: lambdas for DMIC, QP_I clipped to the paper's range (duplicates
    dropped) for the hand-crafted maps, base QPs for the anchors."""
    if method == "dmic":
        return [float(v) for v in lambdas]
    if method in HANDCRAFTED:
        return [float(q) for q in sorted({clip_qp_i(q) for q in qps})]
    return [float(q) for q in qps]


def default_specs(methods: Iterable[str] = ("hevc", "dmic"), qps: Sequence[float] = QP_GRID,
                  lambdas: Sequence[float] = LAMBDA_GRID) -> list[PointSpec]:
    """The points of a sweep: QPs for QP-driven methods, lambdas for DMIC."""
    specs = []
    for method in methods:
        get_decider(method)
        specs.extend(PointSpec(method, s) for s in settings_for(method, qps, lambdas))
    return specs
