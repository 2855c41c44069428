"""Fuzz the loaders: whatever the bytes, ``load_volume`` / ``load_label`` return a volume or raise
:class:`DmicInputError` -- never another exception, never a hang, never a half-read file kept open.

Bounded for CI (``DMIC_FUZZ_EXAMPLES``, default 200 examples per strategy, a few seconds each);
raise it locally for a longer campaign, e.g. ``DMIC_FUZZ_EXAMPLES=5000``.

Strategies: random bytes under every suffix the readers take; valid NIfTI-1 files with random
bytes of the header overwritten; valid NIfTI-1 files with header fields (dims, datatype,
bitpix, pixdim, vox_offset, scaling, qform/sform) set to hostile values; gzip of those; random
bytes inside a zip.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmic_core.errors import DmicInputError
from dmic_core.io import load_label, load_volume

sitk.ProcessObject_SetGlobalWarningDisplay(False)  # GDCM's "no series found" noise, not a result

EXAMPLES = int(os.environ.get("DMIC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm", ".zip")


def _valid_nifti() -> bytes:
    data = np.random.default_rng(0).integers(-1024, 2000, (6, 5, 4)).astype(np.int16)
    img = nib.Nifti1Image(data, np.diag([-0.7, -0.7, 1.5, 1.0]))
    buf = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=buf), "header": nib.FileHolder(fileobj=buf)})
    return buf.getvalue()


VALID = _valid_nifti()
_LIKE = None


def _like():
    global _LIKE
    if _LIKE is None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "like.nii"
            p.write_bytes(VALID)
            _LIKE = load_volume(p)
    return _LIKE


def _load(blob: bytes, suffix: str, label: bool = False) -> None:
    """Write ``blob`` to a fresh file and load it; only success or DmicInputError may come back."""
    with tempfile.TemporaryDirectory(prefix="dmic-fuzz-") as d:
        path = Path(d) / f"fuzz{suffix}"
        path.write_bytes(blob)
        try:
            if label:
                load_label(path, like=_like())
            else:
                volume = load_volume(path)
                assert volume.hu.ndim == 3 and volume.hu.dtype == np.int16
        except DmicInputError as exc:
            text = str(exc)
            assert text.startswith(f"{path.name}: ") and "\n" not in text, text


# NIfTI-1 header fields: (offset, struct format)
FIELDS = {
    "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"), "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<6f"), "srow": (280, "<12f"),
}
hostile_int16 = st.one_of(st.integers(-2, 10), st.sampled_from([-32768, -1, 0, 1, 255, 256, 8191, 8193, 32767]))
hostile_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                          st.sampled_from([0.0, -0.0, 1e-30, 1e30, -1.0, 1.0, 352.0, 1e9]))


@st.composite
def mutated_fields(draw) -> bytes:
    blob = bytearray(VALID)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4, unique=True)):
        offset, fmt = FIELDS[name]
        n = struct.calcsize(fmt) // (2 if fmt[-1] == "h" else 4)
        values = draw(st.lists(hostile_int16 if fmt[-1] == "h" else hostile_float, min_size=n, max_size=n))
        struct.pack_into(fmt, blob, offset, *values)
    return bytes(blob)


@st.composite
def mutated_bytes(draw) -> bytes:
    blob = bytearray(VALID)
    for _ in range(draw(st.integers(1, 12))):
        blob[draw(st.integers(0, 351))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        blob = blob[: draw(st.integers(0, len(blob)))]
    return bytes(blob)


@FUZZ
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(blob, suffix):
    _load(blob, suffix)


@FUZZ
@given(blob=st.one_of(mutated_bytes(), mutated_fields()), compressed=st.booleans(), label=st.booleans())
def test_mutated_nifti(blob, compressed, label):
    _load(gzip.compress(blob) if compressed else blob, ".nii.gz" if compressed else ".nii", label=label)


@FUZZ
@given(members=st.dictionaries(st.text(st.characters(codec="ascii", exclude_characters="\0"), min_size=1,
                                       max_size=12), st.binary(max_size=512), min_size=1, max_size=3))
def test_random_zip_members(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    _load(buf.getvalue(), ".zip")


def test_valid_seed_loads():
    """The seed the mutations start from is itself accepted (else the fuzz would test nothing)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed.nii"
        path.write_bytes(VALID)
        assert load_volume(path).shape == (4, 5, 6)
    pytest.importorskip("hypothesis")
