"""The agents' evaluation protocol: reserved volumes, every method, an oracle bound, honest tables.

:mod:`.volumes` (which volumes), :mod:`.methods` (gop8 and the oracle beside the registry),
:mod:`.run` (the points, on the one runner, resumable), :mod:`.summary` (BD per volume, means
with bootstrap intervals, wins over the best hand-crafted map, share of the oracle's gain) and
:mod:`.report` (markdown, plotly, JSON). The CLI is ``dmic evaluate``.
"""
