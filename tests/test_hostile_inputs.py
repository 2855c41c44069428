"""Hostile inputs: each is refused with one line naming the file, and nothing is left half-written.

Every input is tried twice: straight through the loaders (the app and every CLI command use
them) and as a row of a ``dmic batch`` dataset next to a good volume, where it must fail its own
task (without a pointless retry), leave no result or temporary file, and not disturb the good
volume's task.

Zip bombs are refused from the archive's directory, before one byte is extracted: by the
compression ratio of each member and of the whole archive (``ZIP_MAX_RATIO``; real DICOM deflates
below 8:1), and by the space free where extraction would write. A child process that cannot write
a single byte (``RLIMIT_FSIZE`` 0) shows that nothing was written.

Non-CT intensities are **refused** (documented in docs/batch.md): 8-bit voxels (a photo, a
screenshot, a mask) and images without a single voxel below 0 HU (MR-like data, or CT stored
without its rescale intercept) cannot be CT in Hounsfield units, and compressing them with HU
windows would give meaningless numbers.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmic_core.cli import main as dmic_main
from dmic_core.datasets.phantom import generate_phantom, write_imagecas_pair
from dmic_core.defaults import shared_data_dir
from dmic_core.errors import DmicInputError
from dmic_core.io import load_label, load_volume
from dmic_core.io import readers
from dmic_core.io.readers import MAX_ZIP_UNCOMPRESSED_BYTES
from dicom_helpers import dicom_slice
from polling import scaled

AFFINE = np.diag([-0.7, -0.7, 1.0, 1.0])


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _dicom_slice(z: float) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return dicom_slice(Path(folder) / "slice.dcm", z, intercept=-1024).read_bytes()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(zipfile.ZipInfo(name), blob, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _overlapping_zip_bomb(path: Path, copies: int = 70, member_bytes: int = 64 << 20) -> Path:
    """A real zip bomb: one deflated 64 MiB member referenced by ``copies`` central-directory
    entries (the "overlapping files" construction), declaring ~4.4 GiB in a ~70 KiB file."""
    plain = path.with_suffix(".one.zip")
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("slice.dcm", b"\0" * member_bytes)
    with zipfile.ZipFile(plain) as zf:
        info = zf.infolist()[0]
    blob = plain.read_bytes()
    plain.unlink()
    local = blob[: blob.index(b"PK\x01\x02")]  # local header + data
    directory = b""
    for i in range(copies):
        name = f"slice{i:03d}.dcm".encode()
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, info.CRC,
                                 info.compress_size, info.file_size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, copies, copies, len(directory), len(local), 0)
    path.write_bytes(local + directory + end)
    return path


def _nifti2_huge_header(path: Path) -> Path:
    """A NIfTI-2 header claiming 100000^3 int16 voxels (2 PB) over a few bytes of data."""
    header = nib.Nifti2Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((100000, 100000, 100000))
    header.set_zooms((0.5, 0.5, 0.5))
    header["vox_offset"] = 544
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 256)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("good")
    volume, label = generate_phantom(1, 8, size=128)
    return write_imagecas_pair(volume, label, root, "good")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, good) -> list[tuple[str, Path, Path | None, str]]:
    """(name, image, label, expected message part); ``label`` set where the label is the hostile file."""
    d = tmp_path_factory.mktemp("hostile")
    image, label = good
    valid = _nifti(d / "valid.nii", np.full((16, 16, 8), -300, np.int16))
    cases: list[tuple[str, Path, Path | None, str]] = []

    def add(name, path, match, label_path=None):
        cases.append((name, path, label_path, match))

    blob = bytearray(gzip.compress(valid.read_bytes()))
    blob[len(blob) // 2: len(blob) // 2 + 32] = b"\xa5" * 32
    (d / "corrupt_gzip.nii.gz").write_bytes(bytes(blob))
    add("corrupt gzip", d / "corrupt_gzip.nii.gz", "")  # either "not a readable" or "truncated or corrupt"
    gz = image.read_bytes()
    (d / "truncated_gzip.nii.gz").write_bytes(gz[: len(gz) // 2])
    add("truncated gzip", d / "truncated_gzip.nii.gz", "truncated or corrupt")
    (d / "truncated.nii").write_bytes(valid.read_bytes()[:1500])
    add("truncated NIfTI", d / "truncated.nii", "truncated or corrupt")
    (d / "empty.nii.gz").write_bytes(b"")
    add("empty file", d / "empty.nii.gz", "not a readable NIfTI image")
    (d / "text.nii.gz").write_text("patient list, not an image\n")
    add("text named .nii.gz", d / "text.nii.gz", "not a readable NIfTI image")
    add("2-D", _nifti(d / "flat.nii.gz", np.zeros((64, 64), np.int16)), "2-D data")
    add("single slice", _nifti(d / "one_slice.nii.gz", np.zeros((64, 64, 1), np.int16)), "is 2-D")
    add("4-D", _nifti(d / "cine.nii.gz", np.zeros((16, 16, 8, 3), np.int16)), "4-D data")
    nan = np.full((16, 16, 8), -500, np.float32)
    nan[3, 4, 5] = np.nan
    add("NaN voxel", _nifti(d / "nan.nii.gz", nan), "NaN or infinite")
    inf = np.full((16, 16, 8), -500, np.float32)
    inf[0, 0, 0] = np.inf
    add("inf voxel", _nifti(d / "inf.nii.gz", inf), "NaN or infinite")
    add("absurd dimensions", _nifti2_huge_header(d / "huge.nii"), "absurd dimensions (100000, 100000, 100000)")
    add("absurd voxel size", _nifti(d / "giant_voxels.nii.gz", np.zeros((8, 8, 8), np.int16),
                                    np.diag([500.0, 500.0, 500.0, 1.0])), "absurd voxel size")
    dcm = _dicom_slice(0.0)
    add("zip with ..", _zip(d / "dotdot.zip", {"series/a.dcm": dcm, "../escape.dcm": dcm}), "parent-directory path")
    add("zip with absolute path", _zip(d / "absolute.zip", {"/tmp/escape.dcm": dcm}), "absolute path")
    add("zip bomb", _overlapping_zip_bomb(d / "bomb.zip"), "possible zip bomb")
    photo = np.random.default_rng(0).integers(0, 256, (64, 48, 8)).astype(np.uint8)
    add("8-bit photo", _nifti(d / "photo.nii.gz", photo), "8-bit voxels (0..255)")
    mr = np.random.default_rng(1).integers(0, 4000, (32, 32, 8)).astype(np.uint16)
    add("MR-like", _nifti(d / "mr_t1.nii.gz", mr), "no voxel below 0 HU")
    grid = nib.load(label)
    shifted = nib.Nifti1Image(np.asarray(grid.dataobj), grid.affine @ np.diag([1.1, 1.0, 1.0, 1.0]))
    nib.save(shifted, str(d / "grid_label.nii.gz"))
    shutil.copy(image, d / "grid_image.nii.gz")
    add("label grid mismatch", d / "grid_image.nii.gz", "label grid does not match", d / "grid_label.nii.gz")
    short = nib.Nifti1Image(np.asarray(grid.dataobj)[:, :, :-2], grid.affine)
    nib.save(short, str(d / "short_label.nii.gz"))
    shutil.copy(image, d / "short_image.nii.gz")
    add("label shape mismatch", d / "short_image.nii.gz", "label grid does not match", d / "short_label.nii.gz")
    return cases


def _culprit(case) -> Path:
    _name, image, label_path, _match = case
    return label_path if label_path is not None else image


def test_zip_bomb_is_real(hostile):
    bomb = next(c[1] for c in hostile if c[0] == "zip bomb")
    with zipfile.ZipFile(bomb) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    assert bomb.stat().st_size < 200 << 10 and declared > MAX_ZIP_UNCOMPRESSED_BYTES  # real limit, not patched


def test_each_hostile_input_is_refused_in_one_line(hostile, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where zip extraction would go
    for case in hostile:
        name, image, label_path, match = case
        culprit = _culprit(case)
        with pytest.raises(DmicInputError) as info:
            if label_path is None:
                load_volume(image)
            else:
                load_label(label_path, like=load_volume(image))
        text = str(info.value)
        assert text.startswith(f"{culprit.name}: ") and "\n" not in text and len(text) < 300, (name, text)
        assert match in text, (name, text)
        if name == "corrupt gzip":
            assert "not a readable NIfTI" in text or "truncated or corrupt" in text
    assert list(scratch.iterdir()) == [], "extraction folders must be removed"
    assert not (tmp_path.parent / "escape.dcm").exists() and not Path("/tmp/escape.dcm").exists()


def test_hostile_rows_fail_alone_in_a_batch(hostile, good, tmp_path, capsys):
    image, label = good
    rows = [f"good,{image},{label}"]
    for i, (_name, img, label_path, _match) in enumerate(hostile):
        rows.append(f"h{i:02d},{img},{label_path or label}")
    csv = tmp_path / "dataset.csv"
    csv.write_text("id,image,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = dmic_main(["batch", str(csv), "--out", str(out), "--methods", "hevc", "--qps", "32",
                      "--segmenter", "gt", "--workers", "1", "--no-progress"])
    assert code == 1
    tasks = pd.read_csv(out / "tasks.csv", keep_default_na=False).set_index("case_id")
    assert tasks.loc["good", "status"] == "done"
    for i, case in enumerate(hostile):
        row = tasks.loc[f"h{i:02d}"]
        assert row.status == "failed" and row.attempts == 1, (case[0], row.to_dict())  # not retried
        assert row.error.startswith(f"{_culprit(case).name}: ") and case[3] in row.error, (case[0], row.error)
        assert not (out / "points" / f"h{i:02d}").exists() or not any((out / "points" / f"h{i:02d}").iterdir())
    assert pd.read_csv(out / "points.csv").case_id.tolist() == ["good"]
    leftovers = [p for p in out.rglob("*") if ".partial-" in p.name or p.name.endswith(".tmp")]
    assert leftovers == []
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dmic batch: h")]
    assert len(err) == len(hostile)


# --- zip bombs by compression ratio, and zips larger than the free space -----------------------
# Refused from the archive's directory before one byte is extracted: ratio per member and in total
# (declared sizes against the file's real size), and the space free where extraction would write.

ENHANCED_CT = shared_data_dir() / "dicom" / "eCT_Supplemental.dcm"


def _crc32_of_zeros(n: int) -> int:
    """``zlib.crc32(bytes(n))`` without making n bytes: CRC-32's register update by a zero byte is
    linear over GF(2), so n zero bytes are that 32x32 bit matrix to the n-th power."""
    def apply(matrix: list[int], vector: int) -> int:
        out, bit = 0, 0
        while vector:
            if vector & 1:
                out ^= matrix[bit]
            vector >>= 1
            bit += 1
        return out

    def one_byte(v: int) -> int:
        for _ in range(8):
            v = (v >> 1) ^ (0xEDB88320 if v & 1 else 0)
        return v

    power, result = [one_byte(1 << i) for i in range(32)], [1 << i for i in range(32)]
    while n:
        if n & 1:
            result = [apply(power, c) for c in result]
        power = [apply(power, c) for c in power]
        n >>= 1
    return apply(result, 0xFFFFFFFF) ^ 0xFFFFFFFF


def _zeros_bomb(path: Path, size: int = 2 << 30, name: str = "zeros.dcm") -> Path:
    """One deflated member of ``size`` zero bytes (the issue's bomb: ~2 MB expanding to 2 GiB),
    written without making the zeros: after a full flush deflate codes each MiB of zeros into the
    same bytes, so the stream is one coded MiB repeated."""
    assert size % (1 << 20) == 0 and size < 1 << 32
    coder = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = coder.compress(bytes(1 << 20)) + coder.flush(zlib.Z_FULL_FLUSH)
    data = chunk * (size >> 20) + coder.flush()
    crc, raw = _crc32_of_zeros(size), name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw), 0) + raw
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                          len(raw), 0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


_NO_WRITES = r"""
import resource, signal, sys, tempfile
from dmic_core.errors import DmicInputError
from dmic_core.io import load_volume
tempfile.gettempdir()  # found (by writing a probe file) while writing is still allowed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # from here, writing a byte fails
try:
    load_volume(sys.argv[1])
except DmicInputError as exc:
    print(exc)
"""


def _refusal_without_writing(path: Path) -> str:
    """Load ``path`` in a process that cannot write a single byte to any file (``RLIMIT_FSIZE`` 0):
    a refusal from the directory alone comes back as is; any extraction fails with EFBIG instead."""
    proc = subprocess.run([sys.executable, "-c", _NO_WRITES, str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=scaled(60))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_crc32_of_zeros_matches_zlib():
    for n in (0, 1, 7, 1000, 1 << 20, 3 << 20):
        assert _crc32_of_zeros(n) == zlib.crc32(bytes(n)), n


def test_zeros_bomb_is_refused_by_ratio_before_anything_is_written(tmp_path):
    bomb = _zeros_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 3 << 20  # ~2 MB on disk
    with zipfile.ZipFile(bomb) as zf:  # a real bomb: a valid member that declares and holds 2 GiB of zeros
        (info,) = zf.infolist()
        assert info.file_size == 2 << 30
        with zf.open(info) as member:
            assert member.read(16 << 20) == bytes(16 << 20)
    text = _refusal_without_writing(bomb)
    assert text.startswith("bomb.zip: zip member 'zeros.dcm' expands ") and "possible zip bomb" in text, text
    ratio = float(text.split(" expands ")[1].split(":")[0])
    assert ratio > 1000 > readers.ZIP_MAX_RATIO
    # the harness does catch writes: a harmless zip that must be extracted fails there
    harmless = _zip(tmp_path / "harmless.zip", {"a/one.dcm": _dicom_slice(0.0)})
    assert "cannot extract 'a/one.dcm'" in _refusal_without_writing(harmless)


def test_many_small_members_are_refused_by_total_ratio(tmp_path):
    """Each member is under the size from which one member's ratio counts; together they are a bomb."""
    members = {f"s{i:03d}.dcm": bytes(512 << 10) for i in range(64)}  # 32 MiB of zeros in ~40 KB
    path = _zip(tmp_path / "many.zip", members)
    with zipfile.ZipFile(path) as zf:
        assert max(i.file_size for i in zf.infolist()) <= readers.ZIP_RATIO_MIN_BYTES
    text = _refusal_without_writing(path)
    assert text.startswith("many.zip: zip archive expands ") and "possible zip bomb" in text, text


def test_overlapping_stored_members_are_refused_by_total_ratio(tmp_path):
    """Stored (uncompressed, 1:1) members that all point at the same bytes: only the archive's real
    size against the declared total shows the bomb."""
    blob = np.random.default_rng(0).integers(0, 256, 256 << 10, dtype=np.uint8).tobytes()
    single = tmp_path / "one.zip"
    with zipfile.ZipFile(single, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("slice.dcm", blob)
    with zipfile.ZipFile(single) as zf:
        info = zf.infolist()[0]
    raw = single.read_bytes()
    local = raw[: raw.index(b"PK\x01\x02")]
    directory = b""
    for i in range(200):
        name = f"slice{i:03d}.dcm".encode()
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, info.CRC,
                                 info.compress_size, info.file_size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 200, 200, len(directory), len(local), 0)
    path = tmp_path / "overlap.zip"
    path.write_bytes(local + directory + end)
    with zipfile.ZipFile(path) as zf:
        assert all(i.file_size == i.compress_size for i in zf.infolist())  # every member 1:1
    text = _refusal_without_writing(path)
    assert text.startswith("overlap.zip: zip archive expands ") and "possible zip bomb" in text, text


@pytest.mark.skipif(not ENHANCED_CT.exists(), reason="shared test data (eCT_Supplemental.dcm) not present")
def test_real_dicom_zip_is_far_below_the_ratio_limit(tmp_path):
    path = tmp_path / "enhanced.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.write(ENHANCED_CT, "case/eCT_Supplemental.dcm")
    with zipfile.ZipFile(path) as zf:
        (info,) = zf.infolist()
    ratio = info.file_size / info.compress_size
    assert info.file_size > readers.ZIP_RATIO_MIN_BYTES and ratio < readers.ZIP_MAX_RATIO / 10, ratio
    vol = load_volume(path)
    assert vol.meta["modality"] == "CT" and vol.n_frames > 1


@pytest.fixture
def small_tmp_disk(tmp_path, monkeypatch):
    """Zip extraction goes to a real 24 MiB tmpfs (mounting needs root: skipped otherwise)."""
    mount = tmp_path / "tmpdisk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip() or proc.returncode})")
    monkeypatch.setattr(tempfile, "tempdir", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_zip_larger_than_the_free_space_is_refused_before_writing(small_tmp_disk, tmp_path):
    rng = np.random.default_rng(1)
    fits = _zip(tmp_path / "fits.zip", {"notes/a.bin": rng.bytes(4 << 20)})  # 4 MiB + 16 MiB spare < 24 MiB
    with pytest.raises(DmicInputError, match="no DICOM image found"):  # extracted, then found not to be DICOM
        load_volume(fits)
    too_big = _zip(tmp_path / "too_big.zip", {"notes/b.bin": rng.bytes(12 << 20)})
    with pytest.raises(DmicInputError) as info:
        load_volume(too_big)
    text = str(info.value)
    assert text.startswith("too_big.zip: zip archive expands to 12582912 bytes, more than the ") and \
        "bytes free where it would be extracted" in text, text
    assert list(small_tmp_disk.iterdir()) == [] and shutil.disk_usage(small_tmp_disk).used == 0


def test_zip_whose_member_is_both_a_file_and_a_folder_is_refused_in_one_line(tmp_path):
    """Found by the loader fuzz in CI: members '0' and '0/0' (a file, then a file inside it)."""
    import zipfile

    from dmic_core.errors import DmicInputError
    from dmic_core.io import load_volume

    path = tmp_path / "clash.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("0", b"")
        zf.writestr("0/0", b"")
    with pytest.raises(DmicInputError, match="cannot extract '0/0'"):
        load_volume(path)
