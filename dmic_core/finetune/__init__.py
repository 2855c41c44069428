"""Few-shot transfer of the DMIC agents to a labelled target dataset (paper II-B, issue 5).

Library API (the CLI ``dmic finetune`` and the app's Fine-tune page are thin layers over it)::

    from dmic_core.finetune import FinetuneConfig, finetune
    cfg = FinetuneConfig(data="phantoms/", shots=1, strategy="a2c", iterations=1000)
    result = finetune(cfg, "work_dirs/finetune/a2c_k1.pt", progress=print_event, should_stop=flag.is_set)

* :mod:`dmic_core.finetune.data` -- K:10:10 split, heart slabs, clip windows.
* :mod:`dmic_core.finetune.config` -- the run's configuration and result, its split of the dataset.
* :mod:`dmic_core.finetune.caches` -- training clips and their surrogate caches (real encodes).
* :mod:`dmic_core.finetune.tune` -- the run: training, checkpoints, model selection.
* :mod:`dmic_core.finetune.files` -- the run's status, history and cancel files.
* :mod:`dmic_core.finetune.background` -- start a run in a detached process (the app).
"""

from dmic_core.finetune.data import SLAB_FRAMES, Split, clip_windows, heart_slab, split_cases
from dmic_core.agents.strategies import STRATEGY_NAMES
from dmic_core.finetune.config import FinetuneConfig, FinetuneResult, default_pretrained, make_split
from dmic_core.finetune.files import read_history, read_status, request_cancel, run_paths
from dmic_core.finetune.tune import finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "SLAB_FRAMES", "STRATEGY_NAMES", "Split", "clip_windows",
           "default_pretrained", "finetune", "heart_slab", "make_split", "read_history", "read_status",
           "request_cancel", "run_paths", "split_cases"]
