"""Where volumes come from: dataset folders and CSVs (:mod:`~dmic_core.datasets.discovery`) and
synthetic CCTA phantoms (:mod:`~dmic_core.datasets.phantom`).

Kept light on purpose (nothing imported here): discovering a dataset must not load the phantom
generator, and the phantom generator must not load the readers of every format.
"""
