"""The protocol's point logs kept beside its report, so a committed report can be resumed or rebuilt.

The logs live under ``WORK/<fingerprint>/points.jsonl`` (:func:`~dmic_core.protocol.run.log_path`),
in a working folder that is not committed: a session that ends before someone copies them by hand
loses every point behind its tables (hours of encodes). ``dmic evaluate`` therefore writes a copy of
each log it used next to the report (:func:`archive_point_logs`) with a manifest naming each copy's
fingerprint, and ``dmic evaluate --restore-from FOLDER`` (:func:`restore_point_logs`) puts the rows
back into the logs of the same fingerprint only: a copy made with another segmenter, coding setup,
x265 build or slab is never mixed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from dmic_core.errors import DmicInputError
from dmic_core.runs import PointLog

#: The manifest beside the copies: ``{file name: {"fingerprint": ..., "rows": ...}}``; a name is relative
#: to the folder (a folder may cite another report's copy, e.g. ``../evaluation/points.jsonl``).
MANIFEST = "point_logs.json"


def archive_name(label: str) -> str:
    """``points.jsonl`` for the protocol's own slab (label ``""``), ``points_slab-33.jsonl`` for ``"-33"``."""
    return "points.jsonl" if not label else f"points_slab{label}.jsonl"


def archive_point_logs(out: str | Path, logs: Mapping[str, tuple[str, Path]]) -> dict[str, int]:
    """Copy each log (label -> (fingerprint, log path)) into ``out`` under :func:`archive_name`, whole
    (every row, also those of replaced checkpoints that other reports cite), one row per key, and
    write the :data:`MANIFEST`. Returns rows per file written; a log that does not exist yet is skipped."""
    from dmic_core.protocol.run import row_key

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    written = {}
    for label, (fingerprint, path) in logs.items():
        if not Path(path).is_file():
            continue
        log = PointLog(path, row_key)
        name = archive_name(label)
        log.save_as(out / name)
        # one copy per fingerprint: an entry that pointed elsewhere for this log (a hand-written manifest
        # citing another report's copy) gives way to the copy written here
        manifest = {k: v for k, v in manifest.items() if v.get("fingerprint") != fingerprint}
        manifest[name] = {"fingerprint": fingerprint, "rows": len(log)}
        written[name] = len(log)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return written


def restore_point_logs(folder: str | Path, targets: Mapping[str, Path]) -> dict[str, int]:
    """Add to each target log (fingerprint -> log path) the rows of ``folder``'s copy with that
    fingerprint that the log lacks; returns rows added per copy used.

    Raises:
        DmicInputError: ``folder`` has no :data:`MANIFEST`, or none of its copies has a fingerprint
            of ``targets`` (the report was made with another model, encoder or slab).
    """
    from dmic_core.protocol.run import row_key

    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise DmicInputError(f"--restore-from: {folder} has no {MANIFEST}: not a report folder written by "
                             "`dmic evaluate` with its point logs")
    manifest = json.loads(manifest_path.read_text())
    usable = {name: entry["fingerprint"] for name, entry in manifest.items() if entry.get("fingerprint") in targets}
    if not usable:
        have = ", ".join(f"{name} ({entry.get('fingerprint')})" for name, entry in manifest.items()) or "none"
        raise DmicInputError(f"--restore-from: no point log in {folder} belongs to this run (wanted fingerprints "
                             f"{', '.join(targets)}; the folder has {have}): another segmenter, coding setup, "
                             "x265 build or slab")
    added = {}
    for name, fingerprint in usable.items():
        source = folder / name
        if not source.is_file():
            raise DmicInputError(f"--restore-from: {MANIFEST} in {folder} names {name}, which is missing")
        added[name] = PointLog(targets[fingerprint], row_key).add_missing(PointLog(source, row_key))
    return added


__all__ = ["MANIFEST", "archive_name", "archive_point_logs", "restore_point_logs"]
