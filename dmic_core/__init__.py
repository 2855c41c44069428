"""DMIC Studio: diagnosis-oriented compression of coronary CT angiography.

Packages by concern (as CompressAI): ``io`` (volumes in and out), ``transforms`` (HU <-> codec
samples), ``codecs`` (HEVC engines and QP facts), ``metrics`` (rate, fidelity, task accuracy,
BD), ``data`` (synthetic CCTA), ``segmentation`` (the diagnosis task), ``agents`` (RL bit
allocation), ``cli`` (the ``dmic`` command).
"""

__version__ = "0.1.0"
