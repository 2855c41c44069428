"""What a point's QP map did on the protected region: QP_I and mean CTU offsets on and off it.

An ``annotate`` hook of :func:`dmic_core.runs.run_points` (computed in the worker, where the case
and the full QP map are), used by the evaluation protocol and the sweep report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dmic_core.maps import foreground_ctus

if TYPE_CHECKING:
    from dmic_core.evaluation.case import Case
    from dmic_core.evaluation.points import PointResult

#: Keys :func:`offset_summary` returns.
OFFSET_KEYS = ("qp_i", "mean_fg_offset", "mean_bg_offset", "fg_ctu_fraction")


def offset_summary(case: "Case", result: "PointResult") -> dict[str, Any]:
    """QP_I, the mean offsets of CTUs inside / outside the protected region, and its CTU share."""
    if result.qp_map is None or result.paper_frame_qps is None:
        return {}
    fg = foreground_ctus(case.reference.roi)
    off = result.qp_map - np.asarray(result.paper_frame_qps)[:, None, None]
    return {"qp_i": int(result.paper_frame_qps[0]),
            "mean_fg_offset": float(off[fg].mean()) if fg.any() else None,
            "mean_bg_offset": float(off[~fg].mean()) if (~fg).any() else None,
            "fg_ctu_fraction": float(fg.mean())}


__all__ = ["OFFSET_KEYS", "offset_summary"]
