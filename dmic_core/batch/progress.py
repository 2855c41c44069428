"""A terminal progress bar fed from the job store (tasks finished, running, failed, ETA).

It reads the store rather than listening to the runner, so it shows the same numbers whether
this process runs the batch or only watches another process that does.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from dmic_core.jobs import JobStore


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class StoreProgress:
    """tqdm bar over a job's tasks; :meth:`update` redraws it from the store."""

    def __init__(self, store: JobStore, job_id: str, workers: int, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.store, self.job_id, self.workers = store, job_id, max(1, workers)
        self._bar = None
        if enabled:
            from tqdm import tqdm

            total = len(store.tasks(job_id))
            self._bar = tqdm(total=total, desc="batch", unit="task", file=stream or sys.stderr,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]", dynamic_ncols=True)
            self._bar.set_postfix_str("ETA ?")

    def update(self) -> dict[str, Any]:
        """Current counts, fraction and ETA (also drawn on the bar when enabled)."""
        progress = self.store.job_progress(self.job_id, workers=self.workers)
        if self._bar is not None:
            c = progress["counts"]
            self._bar.total = progress["total"]
            self._bar.n = c["done"] + c["failed"] + c["cancelled"]
            extra = f", {c['failed']} failed" if c["failed"] else ""
            self._bar.set_postfix_str(f"ETA {_fmt(progress['eta_seconds'])}, {c['running']} running{extra}",
                                      refresh=False)
            self._bar.refresh()
        return progress

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
