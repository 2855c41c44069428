"""DICOM export read back with pydicom and SimpleITK: attributes, UIDs, geometry and pixels."""

from __future__ import annotations

import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dmic_core.export.dicom import HEVC_METHOD, build_series, dicom_zip_bytes, export_dicom_series
from dmic_core.io import load_volume


@pytest.fixture(params=["ras", "oblique-ish"])
def nifti(tmp_path, request):
    """A small volume whose file grid is not the canonical one (axes flipped and swapped)."""
    rng = np.random.default_rng(1)
    data = rng.integers(-1024, 2000, size=(20, 24, 9)).astype(np.int16)  # file axes (i, j, k)
    if request.param == "ras":
        affine = np.array([[0.7, 0, 0, -80.0], [0, 0.8, 0, 12.5], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    else:  # j runs towards anterior->posterior flipped, i and j swapped
        affine = np.array([[0, -0.75, 0, 40.0], [0.9, 0, 0, -60.0], [0, 0, -1.25, 20.0], [0, 0, 0, 1]])
    path = tmp_path / "src.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def test_series_attributes_and_privacy(nifti, tmp_path):
    vol = load_volume(nifti)
    out = export_dicom_series(vol, tmp_path / "series", compression_ratio=37.5)
    files = sorted(out.glob("*.dcm"))
    assert len(files) == vol.n_frames
    sets = [pydicom.dcmread(f) for f in files]
    ds = sets[0]
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.LossyImageCompression == "01"
    assert float(ds.LossyImageCompressionRatio) == pytest.approx(37.5)
    assert ds.LossyImageCompressionMethod == HEVC_METHOD
    assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
    assert len({s.SOPInstanceUID for s in sets}) == len(sets)
    assert len({s.SeriesInstanceUID for s in sets}) == 1 and len({s.StudyInstanceUID for s in sets}) == 1
    assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientIdentityRemoved == "YES"
    again = build_series(vol)[0]
    assert again.SeriesInstanceUID != ds.SeriesInstanceUID, "every export gets new UIDs"
    for k, s in enumerate(sets):
        np.testing.assert_array_equal(s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept), vol.hu[k])


def test_identifiers_only_when_asked(nifti):
    vol = load_volume(nifti)
    ds = build_series(vol, patient={"PatientName": "Doe^Jane", "PatientID": "123"})[0]
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    ds = build_series(vol, patient={"PatientName": "Doe^Jane", "PatientID": "123"}, keep_identifiers=True)[0]
    assert str(ds.PatientName) == "Doe^Jane" and "PatientIdentityRemoved" not in ds


def test_geometry_matches_source_in_simpleitk(nifti, tmp_path):
    vol = load_volume(nifti)
    out = export_dicom_series(vol, tmp_path / "series")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    dicom = reader.Execute()
    source = sitk.ReadImage(str(nifti))
    assert dicom.GetSize() == (vol.shape[2], vol.shape[1], vol.shape[0])
    np.testing.assert_allclose(sorted(dicom.GetSpacing()), sorted(source.GetSpacing()), atol=1e-4)
    dicom_arr = sitk.GetArrayFromImage(dicom)
    np.testing.assert_array_equal(dicom_arr, vol.hu)
    src_arr = sitk.GetArrayFromImage(source)
    rng = np.random.default_rng(0)
    for _ in range(40):
        idx = [int(rng.integers(0, n)) for n in dicom.GetSize()]
        point = dicom.TransformIndexToPhysicalPoint(idx)
        sidx = source.TransformPhysicalPointToIndex(point)
        np.testing.assert_allclose(source.TransformIndexToPhysicalPoint(sidx), point, atol=1e-3)
        assert src_arr[sidx[2], sidx[1], sidx[0]] == dicom_arr[idx[2], idx[1], idx[0]]


def test_zip_round_trip_through_our_reader(nifti, tmp_path):
    vol = load_volume(nifti)
    blob = dicom_zip_bytes(vol, compression_ratio=10.0)
    path = tmp_path / "series.zip"
    path.write_bytes(blob)
    assert all(n.startswith("DMIC_SERIES/") for n in zipfile.ZipFile(path).namelist())
    back = load_volume(path)
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-4)


def _dciodvfy_errors(path) -> list[str]:
    import subprocess

    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("keep_identifiers", [False, True])
def test_every_exported_instance_passes_the_dicom3tools_validator(nifti, tmp_path, keep_identifiers):
    """dciodvfy (Debian dicom3tools, installed by scripts/setup.sh --with-test-tools): 0 errors."""
    import os
    import shutil

    if shutil.which("dciodvfy") is None:
        if os.environ.get("CI"):
            pytest.fail("dciodvfy missing in CI: scripts/setup.sh --with-test-tools installs dicom3tools")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    vol = load_volume(nifti)
    out = export_dicom_series(vol, tmp_path / "series", compression_ratio=20.0,
                              patient={"PatientName": "Doe^Jane", "PatientID": "123"},
                              keep_identifiers=keep_identifiers)
    files = sorted(out.glob("*.dcm"))
    assert len(files) == vol.n_frames
    for f in files:
        assert _dciodvfy_errors(f) == [], f.name
