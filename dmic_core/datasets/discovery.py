"""The volumes of a dataset, from an ImageCAS-layout folder or a CSV: what a batch runs on and
what few-shot tuning splits.

Discovery only looks at names and existence (cheap for 1000 volumes); the contents are checked
by the task that reads them, so one corrupt volume fails its own tasks and not the batch.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from dmic_core.errors import DmicInputError
from dmic_core.io import find_imagecas_pairs

#: Column names accepted for the image and the label in a dataset CSV (case-insensitive).
IMAGE_COLUMNS = ("image", "img", "volume", "ct")
LABEL_COLUMNS = ("label", "mask", "seg", "segmentation")


@dataclass(frozen=True)
class VolumeEntry:
    """One volume of a dataset.

    Attributes:
        case_id: short unique id (ImageCAS id, or the CSV's ``id`` column / image name); used for
            output folder names and the tables, so it is restricted to ``[A-Za-z0-9._-]``.
        image: absolute path of the CT volume.
        label: absolute path of its vessel label, or None.
    """

    case_id: str
    image: str
    label: str | None


def discover(dataset: str | Path) -> list[VolumeEntry]:
    """The volumes of ``dataset``: a folder in the ImageCAS layout or a CSV of image,label rows.

    Raises:
        DmicInputError: missing dataset, empty dataset, unreadable CSV, missing files, duplicates.
    """
    path = Path(dataset)
    if not path.exists():
        raise DmicInputError("dataset not found", path)
    if path.is_dir():
        entries = [VolumeEntry(_safe_id(cid), str(img.resolve()), None if lab is None else str(lab.resolve()))
                   for cid, img, lab in find_imagecas_pairs(path)]
        if not entries:
            raise DmicInputError("no ImageCAS volumes ({id}.img.nii.gz) found in this folder", path)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        entries = _read_csv(path)
    else:
        raise DmicInputError("dataset must be a folder in the ImageCAS layout or a CSV of image,label rows", path)
    _check_unique(entries, path)
    return entries


def _read_csv(path: Path) -> list[VolumeEntry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DmicInputError(f"cannot read the dataset CSV ({exc.__class__.__name__})", path) from exc
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" or ("\t" in text and "," not in text) else "excel"
    rows = [r for r in csv.reader(text.splitlines(), dialect=dialect) if any(c.strip() for c in r)]
    if not rows:
        raise DmicInputError("the dataset CSV is empty", path)
    header = [c.strip().lower() for c in rows[0]]
    image_col = next((header.index(c) for c in IMAGE_COLUMNS if c in header), None)
    if image_col is not None:
        label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
        id_col = header.index("id") if "id" in header else None
        body, first_line = rows[1:], 2
    else:  # no header: image[,label]
        image_col, label_col, id_col, body, first_line = 0, 1, None, rows, 1
    base = path.parent
    entries = []
    for n, row in enumerate(body, start=first_line):
        cell = lambda i: row[i].strip() if i is not None and i < len(row) else ""  # noqa: E731
        image = cell(image_col)
        if not image:
            raise DmicInputError(f"line {n}: no image path", path)
        image_path = _resolve(image, base, path, n, "image")
        label = cell(label_col)
        label_path = _resolve(label, base, path, n, "label") if label else None
        case_id = cell(id_col) or _id_from_name(image_path)
        entries.append(VolumeEntry(_safe_id(case_id), str(image_path), None if label_path is None else str(label_path)))
    if not entries:
        raise DmicInputError("the dataset CSV lists no volumes", path)
    return entries


def _resolve(text: str, base: Path, csv_path: Path, line: int, what: str) -> Path:
    candidate = Path(text).expanduser()
    candidate = candidate if candidate.is_absolute() else base / candidate
    if not candidate.exists():
        raise DmicInputError(f"line {line}: {what} file not found: {text}", csv_path)
    return candidate.resolve()


def _id_from_name(path: Path) -> str:
    name = path.name
    for suffix in (".img.nii.gz", ".img.nii", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".zip", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def _safe_id(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip("._") or "case"


def _check_unique(entries: list[VolumeEntry], path: Path) -> None:
    seen_ids: dict[str, str] = {}
    seen_images: set[str] = set()
    for e in entries:
        if e.image in seen_images:
            raise DmicInputError(f"volume listed twice: {Path(e.image).name}", path)
        seen_images.add(e.image)
        if e.case_id in seen_ids:
            raise DmicInputError(f"two volumes share the id {e.case_id!r} (give the CSV an 'id' column)", path)
        seen_ids[e.case_id] = e.image
