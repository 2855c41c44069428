"""A resumable record of finished points: JSON lines, appended as each point finishes.

What an interrupted or repeated study (the experiments' test cases, the sweep report) reads back
to run only what is missing. The job system keeps its points in its SQLite store instead
(:class:`dmic_core.jobs.JobStore`), where they are also the queue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator


class PointLog:
    """Rows keyed by ``key(row)``; append-only on disk, the last row of a key wins; a torn last line
    (a run killed while writing) is skipped."""

    def __init__(self, path: str | Path, key: Callable[[dict[str, Any]], Hashable]):
        self.path = Path(path)
        self.key = key
        self.rows: dict[Hashable, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                self.rows[key(row)] = row

    def get(self, key: Hashable) -> dict[str, Any] | None:
        return self.rows.get(key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.rows.values()))

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows[self.key(row)] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(_line(row))

    def add_missing(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append the rows whose key the log lacks (rows it holds are kept) and return how many:
        merging another log's points without overwriting this one's."""
        new = [row for row in rows if self.key(row) not in self.rows]
        for row in new:
            self.rows[self.key(row)] = row
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.writelines(_line(row) for row in new)
        return len(new)

    def save_as(self, path: str | Path) -> None:
        """Write the log's rows, one per key, to ``path`` (replaced whole: written aside, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(_line(row) for row in self.rows.values()))
        tmp.replace(path)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, default=float) + "\n"
