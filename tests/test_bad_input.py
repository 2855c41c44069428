"""Every refusal: bad input gives a one-line DmicInputError that names the file."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dmic_core.defaults import shared_data_dir
from dmic_core.errors import DmicInputError
from dmic_core.io import load_label, load_volume, readers
from dicom_helpers import dicom_slice

DATA = shared_data_dir()
CT = DATA / "cta-aorta-crop" / "ct.nii.gz"
AFFINE = np.diag([-0.5, -0.5, 1.0, 1.0])


def refused(path: Path, match: str, loader=load_volume, *args) -> DmicInputError:
    """Assert ``loader(path)`` is refused with a one-line message naming the file and ``match``."""
    with pytest.raises(DmicInputError) as info:
        loader(path, *args)
    text = str(info.value)
    assert text.startswith(f"{path.name}: "), text
    assert "\n" not in text
    assert match in text, text
    return info.value


# --- not an image at all ----------------------------------------------------------------------

def test_missing_file(tmp_path):
    refused(tmp_path / "nope.nii.gz", "file not found")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("hello")
    refused(path, "not a supported image")


def test_text_file_named_nii(tmp_path):
    path = tmp_path / "fake.nii"
    path.write_text("this is not a NIfTI file\n" * 40)
    refused(path, "not a readable NIfTI image")


def test_text_file_named_nii_gz(tmp_path):
    path = tmp_path / "fake.nii.gz"
    path.write_text("plain text, not gzip")
    refused(path, "not a readable NIfTI image")


@pytest.mark.skipif(not CT.exists(), reason="shared test data not present")
def test_truncated_gzip(tmp_path):
    blob = CT.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(blob[: len(blob) // 2])
    refused(path, "truncated or corrupt")


def test_truncated_uncompressed_nifti(tmp_path):
    full = tmp_path / "full.nii"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), AFFINE), full)
    path = tmp_path / "short.nii"
    path.write_bytes(full.read_bytes()[:2000])
    refused(path, "truncated or corrupt")


def test_corrupt_gzip_stream(tmp_path):
    good = tmp_path / "good.nii"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.int16), AFFINE), good)
    blob = bytearray(gzip.compress(good.read_bytes()))
    blob[len(blob) // 2: len(blob) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(bytes(blob))
    text = str(refused(path, ""))
    assert "not a readable NIfTI image" in text or "truncated or corrupt" in text


# --- wrong dimensionality, sizes, values ------------------------------------------------------

@pytest.mark.parametrize("shape,match", [((32, 32), "2-D data"), ((32, 32, 1), "is 2-D"),
                                         ((8, 8, 8, 3), "4-D data"), ((8, 8, 8, 1, 2), "5-D data")])
def test_wrong_dimensionality(tmp_path, shape, match):
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), AFFINE), path)
    refused(path, match)


def test_absurd_dimensions_refused_before_reading(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((20000, 20000, 20000))
    header["vox_offset"] = 352
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 1024)
    refused(path, "absurd dimensions")


def test_absurd_voxel_size(tmp_path):
    path = tmp_path / "big_voxels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([1000.0, 1000.0, 1000.0, 1.0])), path)
    refused(path, "absurd voxel size")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 2, 3] = bad
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    refused(path, "NaN or infinite")


def test_values_beyond_int16(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, 0] = 1e6
    path = tmp_path / "bright.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    refused(path, "do not fit 16-bit HU")


def test_vector_image_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.int16), isVector=True)
    path = tmp_path / "rgb.nrrd"
    sitk.WriteImage(image, str(path))
    refused(path, "components per voxel")


def test_two_d_mha_refused(tmp_path):
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(path))
    refused(path, "2-D data")


def test_garbage_nrrd(tmp_path):
    path = tmp_path / "junk.nrrd"
    path.write_bytes(b"NRRD0004\ngarbage\n")
    refused(path, "not a readable nrrd image")


# --- labels -----------------------------------------------------------------------------------

def test_label_with_nan_and_wrong_grid(tmp_path):
    image = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.int16), AFFINE), image)
    vol = load_volume(image)
    nan_label = np.zeros((6, 6, 6), np.float32)
    nan_label[0, 0, 0] = np.nan
    path = tmp_path / "nan_label.nii.gz"
    nib.save(nib.Nifti1Image(nan_label, AFFINE), path)
    refused(path, "label contains NaN", load_label, vol)
    other = tmp_path / "other_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.uint8), np.diag([-0.6, -0.5, 1.0, 1.0])), other)
    refused(other, "label grid does not match", load_label, vol)
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 5), np.uint8), AFFINE), small)
    refused(small, "label grid does not match", load_label, vol)


# --- DICOM folders and zips -------------------------------------------------------------------

def test_folder_without_dicom(tmp_path):
    folder = tmp_path / "empty_case"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    refused(folder, "no DICOM image found")


def test_single_dicom_slice_is_2d(tmp_path):
    path = dicom_slice(tmp_path / "slice.dcm", 0.0)
    refused(path, "is 2-D")


def test_series_with_missing_slice(tmp_path):
    folder = tmp_path / "gappy"
    folder.mkdir()
    for k, z in enumerate([0.0, 1.0, 2.0, 4.0, 5.0]):  # z = 3 missing
        dicom_slice(folder / f"s{k}.dcm", z)
    refused(folder, "slice spacing is uneven")


def test_series_with_duplicate_positions(tmp_path):
    folder = tmp_path / "dupes"
    folder.mkdir()
    for k, z in enumerate([0.0, 1.0, 1.0, 2.0]):
        dicom_slice(folder / f"s{k}.dcm", z)
    refused(folder, "duplicate slice positions")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(zipfile.ZipInfo(name), blob, compress_type=zipfile.ZIP_DEFLATED)
    return path


@pytest.mark.parametrize("member,match", [("../x.dcm", "parent-directory"), ("a/../../x.dcm", "parent-directory"),
                                          ("/abs/x.dcm", "absolute path"), ("C:/x.dcm", "absolute path")])
def test_zip_path_traversal(tmp_path, member, match):
    blob = dicom_slice(tmp_path / "one.dcm", 0.0).read_bytes()
    outside = tmp_path.parent / "x.dcm"
    path = _zip(tmp_path / "evil.zip", {"ok/one.dcm": blob, member: blob})
    refused(path, match)
    assert not outside.exists()


def test_zip_symlink_member(tmp_path):
    path = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link.dcm")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    refused(path, "symbolic link")


def test_empty_zip(tmp_path):
    path = tmp_path / "empty.zip"
    zipfile.ZipFile(path, "w").close()
    refused(path, "zip archive is empty")


def test_zip_without_dicom(tmp_path):
    path = _zip(tmp_path / "docs.zip", {"readme.txt": b"hello", "dir/data.csv": b"1,2,3\n"})
    refused(path, "no DICOM image found")


def test_not_a_zip(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(b"PK but not really a zip")
    refused(path, "not a valid zip archive")


def test_zip_bomb_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_ZIP_UNCOMPRESSED_BYTES", 1 << 20)
    path = _zip(tmp_path / "bomb.zip", {"zeros.dcm": b"\0" * (4 << 20)})
    assert path.stat().st_size < 64 << 10  # compresses ~1000:1
    refused(path, "possible zip bomb")


def test_zip_forged_size_header(tmp_path, monkeypatch):
    """A member whose header understates its size never expands past it: it fails its CRC."""
    path = _zip(tmp_path / "liar.zip", {"zeros.dcm": b"\0" * (4 << 20)})
    monkeypatch.setattr(readers, "MAX_ZIP_UNCOMPRESSED_BYTES", 1 << 20)
    real_check = readers._check_zip_member

    def understate(info, p):  # as if the central directory lied: declared size tiny
        real_check(info, p)
        info.file_size = 10
    monkeypatch.setattr(readers, "_check_zip_member", understate)
    refused(path, "cannot extract 'zeros.dcm'")


def test_zip_extraction_is_cleaned_up(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = _zip(tmp_path / "docs.zip", {"readme.txt": b"hello"})
    refused(path, "no DICOM image found")
    assert list((tmp_path / "tmp").iterdir()) == []
