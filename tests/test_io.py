"""Reading and writing volumes: real data, every format, orientation round trips, labels."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from nibabel import orientations as nio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dmic_core.defaults import shared_data_dir
from dmic_core.errors import DmicInputError
from dmic_core.io import find_imagecas_pairs, load_label, load_volume, save_image, save_nifti

DATA = shared_data_dir()
CT = DATA / "cta-aorta-crop" / "ct.nii.gz"
AORTA = DATA / "cta-aorta-crop" / "aorta.nii.gz"
ENHANCED = DATA / "dicom" / "eCT_Supplemental.dcm"

needs_data = pytest.mark.skipif(not CT.exists(), reason="shared test data not present")


def write_ct_series(folder: Path, hu_zyx: np.ndarray, spacing_zyx=(2.0, 0.75, 0.5),
                    origin_lps=(-40.0, -30.0, 100.0), row_dir=(1.0, 0.0, 0.0), col_dir=(0.0, 1.0, 0.0),
                    intercept: float = -1024.0, skip: tuple[int, ...] = ()) -> list[Path]:
    """A CT Image Storage series, one file per frame, stored unsigned with a rescale intercept.

    Frame ``k`` lies at ``origin + k * dz * (row x col)``; pixel ``[r, c]`` at ``+ c*dx*row + r*dy*col``.
    File names are shuffled so readers must sort by position, not by name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    normal = np.cross(row_dir, col_dir)
    names = np.random.default_rng(0).permutation(len(hu_zyx))
    paths = []
    for k, frame in enumerate(hu_zyx):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Test^Phantom", "TEST-0001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_ref
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin_lps) + k * spacing_zyx[0] * normal]
        ds.ImageOrientationPatient = [*map(float, row_dir), *map(float, col_dir)]
        ds.PixelSpacing = [spacing_zyx[1], spacing_zyx[2]]
        ds.SliceThickness = spacing_zyx[0]
        ds.Rows, ds.Columns = frame.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.PixelData = (frame.astype(np.int32) - int(intercept)).astype(np.uint16).tobytes()
        path = folder / f"IM{names[k]:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def small_hu(shape=(6, 20, 24), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


# --- NIfTI, real data -----------------------------------------------------------------------

@needs_data
def test_shared_crop_loads_canonical():
    vol = load_volume(CT)
    assert vol.shape == (164, 126, 120)  # file is LPS (120, 126, 164): frames along z
    assert vol.spacing == (1.5, 1.5, 1.5)
    assert vol.hu.dtype == np.int16
    assert vol.source == {"path": str(CT), "format": "nifti"}
    raw = np.asarray(nib.load(CT).dataobj)
    np.testing.assert_array_equal(vol.hu, raw.transpose(2, 1, 0))
    assert vol.hu.min() == -1078 and vol.hu.max() == 3343


@needs_data
def test_nifti_write_back_is_identical(tmp_path):
    vol = load_volume(CT)
    out = save_nifti(vol, vol.hu, tmp_path / "recon.nii.gz")
    src, dst = nib.load(CT), nib.load(out)
    assert dst.shape == src.shape
    np.testing.assert_allclose(dst.affine, src.affine, atol=1e-6)
    assert dst.header.get_zooms() == src.header.get_zooms()
    assert dst.get_data_dtype() == np.int16
    data = np.asarray(dst.dataobj)
    assert data.dtype == np.int16 and data.tobytes() == np.asarray(src.dataobj).tobytes()
    assert dst.header["qform_code"] > 0 and dst.header["sform_code"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["recon.nii.gz"]  # no temp files left


def test_gzipped_nifti_is_standard_gzip_with_the_same_bytes_as_plain_nifti(tmp_path):
    """.nii.gz outputs are deflated by ISA-L (issue 17): any gzip reader must inflate them to exactly
    the bytes nibabel writes for the plain .nii, and the same voxels give the same file."""
    import gzip

    data = np.random.default_rng(0).integers(-1024, 3071, size=(48, 40, 5), dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.4, 0.4, 0.5, 1.0])), tmp_path / "in.nii")
    vol = load_volume(tmp_path / "in.nii")
    hu = vol.hu
    gz, plain = save_nifti(vol, hu, tmp_path / "a.nii.gz"), save_nifti(vol, hu, tmp_path / "a.nii")
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    assert save_nifti(vol, hu, tmp_path / "b.nii.gz").read_bytes() == gz.read_bytes()
    assert np.array_equal(load_volume(gz).hu, hu)


@needs_data
@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("P", "I", "R"), ("S", "L", "A")])
def test_reoriented_nifti_loads_the_same_and_writes_back_on_its_grid(tmp_path, axcodes):
    ref = load_volume(CT)
    src = nib.load(CT)
    transform = nio.ornt_transform(nio.io_orientation(src.affine), nio.axcodes2ornt(axcodes))
    moved = src.as_reoriented(transform)
    assert nib.aff2axcodes(moved.affine) == axcodes
    path = tmp_path / "moved.nii.gz"
    nib.save(moved, path)
    vol = load_volume(path)
    np.testing.assert_array_equal(vol.hu, ref.hu)
    assert vol.spacing == ref.spacing
    out = nib.load(save_nifti(vol, vol.hu, tmp_path / "back.nii.gz"))
    assert out.shape == moved.shape
    np.testing.assert_allclose(out.affine, moved.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.dataobj), np.asarray(moved.dataobj))
    # a mask goes back as uint8 on the same grid
    mask = (vol.hu > 200).astype(np.uint8)
    out_mask = nib.load(save_nifti(vol, mask, tmp_path / "mask.nii"))
    assert out_mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(out_mask.dataobj), np.asarray(moved.dataobj) > 200)


@needs_data
def test_label_loads_canonical_and_in_another_orientation(tmp_path):
    vol = load_volume(CT)
    label = load_label(AORTA, vol)
    assert label.dtype == np.uint8 and label.shape == vol.shape
    raw = np.asarray(nib.load(AORTA).dataobj)
    np.testing.assert_array_equal(label, raw.transpose(2, 1, 0))
    assert set(np.unique(label)) == {0, 1}
    # the same label stored RAS and multi-class (value 2) still lands on the image's voxels as 0/1
    img = nib.load(AORTA)
    ras = img.as_reoriented(nio.ornt_transform(nio.io_orientation(img.affine), nio.axcodes2ornt("RAS")))
    data = np.asarray(ras.dataobj).astype(np.uint8) * 2
    path = tmp_path / "ras_label.nii.gz"
    nib.save(nib.Nifti1Image(data, ras.affine), path)
    np.testing.assert_array_equal(load_label(path, vol), label)


@needs_data
def test_label_grid_mismatch_is_refused(tmp_path):
    vol = load_volume(CT)
    img = nib.load(AORTA)
    data = np.asarray(img.dataobj)
    cropped = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, :-1], img.affine), cropped)
    with pytest.raises(DmicInputError, match="cropped.nii.gz: label grid does not match.*shape"):
        load_label(cropped, vol)
    shifted_affine = img.affine.copy()
    shifted_affine[0, 3] += 1.5  # one voxel off
    shifted = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(data, shifted_affine), shifted)
    with pytest.raises(DmicInputError, match="shifted.nii.gz: label grid does not match.*affines differ"):
        load_label(shifted, vol)


def test_four_d_with_trailing_singleton_is_squeezed(tmp_path):
    data = small_hu((8, 9, 10, 1))
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([-0.5, -0.5, 2.0, 1.0])), path)
    vol = load_volume(path)
    assert vol.file_shape == (8, 9, 10) and vol.shape == (10, 9, 8)
    np.testing.assert_array_equal(vol.hu, data[..., 0].transpose(2, 1, 0))


def test_scaled_float_nifti_becomes_rounded_int16(tmp_path):
    stored = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(stored, np.diag([-1.0, -1.0, 1.0, 1.0]))
    img.header.set_slope_inter(0.5, -1000.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    vol = load_volume(path)
    expected = np.rint(stored * 0.5 - 1000.0).astype(np.int16)  # rint: half to even
    np.testing.assert_array_equal(vol.hu, expected.transpose(2, 1, 0))
    assert vol.meta["rescale"] == [0.5, -1000.0]


# --- DICOM ----------------------------------------------------------------------------------

def test_enhanced_ct_multiframe():
    if not ENHANCED.exists():
        pytest.skip("shared DICOM not present")
    vol = load_volume(ENHANCED)
    assert vol.shape == (2, 512, 512)
    assert vol.source["format"] == "dicom"
    np.testing.assert_allclose(vol.spacing, (10.0, 0.388672, 0.388672), rtol=1e-6)
    ds = pydicom.dcmread(ENHANCED)
    # rows run along -x (towards the patient's right): canonical LPS flips the columns
    expected = (ds.pixel_array.astype(np.int32) - 1024)[:, :, ::-1]
    np.testing.assert_array_equal(vol.hu, expected)
    assert vol.meta["modality"] == "CT" and vol.meta["number_of_frames"] == 2
    assert vol.meta["dicom_reference"] == {"path": str(ENHANCED), "member": None}
    assert not any("patient" in key.lower() for key in vol.meta)


@pytest.mark.parametrize("row_dir,col_dir,flip", [((1.0, 0, 0), (0, 1.0, 0), False),
                                                  ((-1.0, 0, 0), (0, -1.0, 0), True)])
def test_dicom_series_folder_round_trip(tmp_path, row_dir, col_dir, flip):
    hu = small_hu()
    write_ct_series(tmp_path / "series", hu, row_dir=row_dir, col_dir=col_dir)
    vol = load_volume(tmp_path / "series")
    expected = hu[:, ::-1, ::-1] if flip else hu
    np.testing.assert_array_equal(vol.hu, expected)
    np.testing.assert_allclose(vol.spacing, (2.0, 0.75, 0.5))
    assert vol.meta["dicom_files"] == 6 and vol.meta["modality"] == "CT"
    assert "TEST-0001" not in repr(vol.meta) and "Phantom" not in repr(vol.meta)
    # the file grid's voxel 0 is the first frame's first pixel, at the origin (LPS -> RAS)
    np.testing.assert_allclose(vol.affine[:3, 3], (40.0, 30.0, 100.0))
    # written back as NIfTI it overlays the series: same canonical voxels on reload
    back = load_volume(save_nifti(vol, vol.hu, tmp_path / "series.nii.gz"))
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)


def test_dicom_zip_round_trip(tmp_path):
    hu = small_hu(seed=3)
    files = write_ct_series(tmp_path / "series", hu)
    zpath = tmp_path / "case.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", "not dicom")
        for f in files:
            zf.write(f, f"case/DICOM/{f.name}")
    vol = load_volume(zpath)
    np.testing.assert_array_equal(vol.hu, hu)
    assert vol.source == {"path": str(zpath), "format": "dicom"}
    ref = vol.meta["dicom_reference"]
    assert ref["path"] == str(zpath) and ref["member"].startswith("case/DICOM/IM")


def test_dicom_folder_with_two_series_takes_the_larger(tmp_path):
    scout, main = small_hu((3, 12, 12), seed=5), small_hu((7, 20, 24), seed=6)
    write_ct_series(tmp_path / "study" / "scout", scout, origin_lps=(0.0, 0.0, -500.0))
    write_ct_series(tmp_path / "study" / "cta", main)
    vol = load_volume(tmp_path / "study")
    np.testing.assert_array_equal(vol.hu, main)
    assert vol.meta["dicom_series_found"] == 2 and vol.meta["dicom_files"] == 7


# --- SimpleITK formats ----------------------------------------------------------------------

@needs_data
@pytest.mark.parametrize("suffix,fmt", [(".nrrd", "nrrd"), (".mha", "metaimage")])
def test_itk_formats_match_nifti(tmp_path, suffix, fmt):
    ref = load_volume(CT)
    # written by SimpleITK itself (its own NIfTI->LPS conversion), not by our writer
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(CT)), str(path), True)
    vol = load_volume(path)
    assert vol.source["format"] == fmt
    np.testing.assert_array_equal(vol.hu, ref.hu)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    # and our writer's output reads back the same
    again = load_volume(save_image(vol, vol.hu, tmp_path / f"again{suffix}"))
    np.testing.assert_array_equal(again.hu, ref.hu)
    np.testing.assert_allclose(again.affine, ref.affine, atol=1e-4)


def test_itk_writer_keeps_oblique_dicom_geometry(tmp_path):
    if not ENHANCED.exists():
        pytest.skip("shared DICOM not present")
    vol = load_volume(ENHANCED)
    again = load_volume(save_image(vol, vol.hu, tmp_path / "ect.mha"))
    np.testing.assert_array_equal(again.hu, vol.hu)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-4)


# --- ImageCAS layout ------------------------------------------------------------------------

def test_find_imagecas_pairs(tmp_path):
    for name in ["1.img.nii.gz", "1.label.nii.gz", "10.img.nii.gz", "10.label.nii.gz",
                 "2.img.nii.gz", "notes.txt", "3.label.nii.gz"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "7.img.nii.gz").write_bytes(b"")
    pairs = find_imagecas_pairs(tmp_path)
    assert [p[0] for p in pairs] == ["1", "2", "7", "10"]
    assert pairs[0] == ("1", tmp_path / "1.img.nii.gz", tmp_path / "1.label.nii.gz")
    assert pairs[1] == ("2", tmp_path / "2.img.nii.gz", None)
    assert pairs[3][2] == tmp_path / "10.label.nii.gz"
    with pytest.raises(DmicInputError, match="notes.txt: not a folder"):
        find_imagecas_pairs(tmp_path / "notes.txt")
