"""Methods: how the QPs of a volume are chosen. One registry, one decider interface.

* :mod:`~dmic_core.methods.base` -- :class:`PointSpec` (method, setting), :class:`Decision` and the
  :class:`Decider` interface.
* :mod:`~dmic_core.methods.registry` -- :data:`REGISTRY` (name -> decider), :data:`METHOD_NAMES`,
  :func:`get_decider`, :func:`default_specs` (a method's rate points on the grids).
* the deciders: :mod:`~dmic_core.methods.anchors` (``hevc``, ``ratecontrol``),
  :mod:`~dmic_core.methods.maps` (the five hand-crafted CTU maps), :mod:`~dmic_core.methods.dmic`.

Running a point (decide, code, score, write) is :func:`dmic_core.runs.run_point`.
"""

from dmic_core.methods.base import Decider, Decision, PointSpec
from dmic_core.methods.registry import ANCHOR, METHOD_NAMES, REGISTRY, default_specs, get_decider, settings_for

__all__ = ["ANCHOR", "Decider", "Decision", "METHOD_NAMES", "PointSpec", "REGISTRY", "default_specs", "get_decider",
           "settings_for"]
