"""DMIC Studio: diagnosis-oriented compression of coronary CT angiography.

Packages by concern (as CompressAI): ``io`` (volumes in and out), ``transforms`` (HU <-> codec
samples), ``codecs`` (HEVC engines and QP facts), ``metrics`` (rate, fidelity, task accuracy,
BD), ``datasets`` (dataset folders, synthetic CCTA), ``segmentation`` (the diagnosis task),
``agents`` (RL bit allocation), ``sweep``/``batch``/``jobs`` (running many points), ``cli`` (the
``dmic`` command) and ``app_actions`` (the web app's actions). ``docs/architecture.md`` draws
the layers.
"""

import os as _os

# OpenMP's default busy-waiting makes a 3 ms agent step take 0.3 s when other processes share the
# cores (docs/agents.md). Set before torch is imported anywhere in the CLI, app and workers.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
