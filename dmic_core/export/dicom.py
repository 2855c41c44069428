"""Export a decoded volume as a derived, lossy-flagged CT DICOM series (pydicom).

One CT Image Storage instance per axial frame, Explicit VR Little Endian, signed 16-bit HU
(RescaleSlope 1, RescaleIntercept 0). The series says what happened to the pixels:
``ImageType`` DERIVED\\SECONDARY\\AXIAL, ``LossyImageCompression`` "01" with the ratio and the
method (``ISO_23008_2`` = HEVC), and a ``DerivationDescription``. Study, Series, SOP Instance and
Frame of Reference UIDs are new. Geometry comes from the volume's affine (NIfTI RAS+ converted to
DICOM LPS): ``ImagePositionPatient`` per frame, ``ImageOrientationPatient``, ``PixelSpacing``,
``SliceThickness``, so the series overlays the source in any viewer.

Privacy: by default the series carries no patient identifiers at all (empty type-2 attributes,
``PatientIdentityRemoved`` YES). Identifiers are only written when passed in ``patient`` with
``keep_identifiers=True``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from nibabel import orientations as nio
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from dmic_core.volume import Volume

#: DICOM defined term of (0028,2114) for HEVC / H.265.
HEVC_METHOD = "ISO_23008_2"

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Patient-level attributes we may write when asked to keep identifiers.
IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                       "StudyID", "ReferringPhysicianName", "StudyDate", "StudyTime", "InstitutionName")


def canonical_affine_lps(volume: Volume) -> np.ndarray:
    """4x4 map from canonical voxel indices ``(x, y, z, 1)`` to LPS patient coordinates (mm)."""
    to_file = nio.inv_ornt_aff(volume.to_canonical, volume.file_shape)
    return _RAS_TO_LPS @ np.asarray(volume.affine, dtype=np.float64) @ to_file


def _ds(value: float) -> str:
    """A DS value within DICOM's 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def build_series(volume: Volume, array_zyx: np.ndarray | None = None, *, compression_ratio: float | None = None,
                 method: str = HEVC_METHOD, description: str = "DMIC decoded", derivation: str | None = None,
                 patient: dict[str, Any] | None = None, keep_identifiers: bool = False,
                 series_number: int = 901, body_part: str = "HEART") -> list[Dataset]:
    """The datasets of the series, one per canonical frame (inferior to superior).

    Args:
        volume: the decoded volume (its ``hu`` is used unless ``array_zyx`` is given).
        compression_ratio: original size / coded size, written as ``LossyImageCompressionRatio``.
        method: ``LossyImageCompressionMethod`` (default HEVC).
        patient: identifiers of the source study (written only with ``keep_identifiers``).
        body_part: ``BodyPartExamined`` (an unpaired part, so ``Laterality`` stays absent).
    """
    hu = np.asarray(volume.hu if array_zyx is None else array_zyx)
    if hu.ndim != 3 or hu.shape != volume.hu.shape:
        raise ValueError(f"array shape {hu.shape} does not match volume {volume.hu.shape}")
    if hu.min() < np.iinfo(np.int16).min or hu.max() > np.iinfo(np.int16).max:
        raise ValueError("HU values do not fit signed 16 bits")
    hu = hu.astype("<i2")
    aff = canonical_affine_lps(volume)
    cols_dir = aff[:3, 0] / np.linalg.norm(aff[:3, 0])  # along a row: increasing column index (x)
    rows_dir = aff[:3, 1] / np.linalg.norm(aff[:3, 1])  # down a column: increasing row index (y)
    sz, sy, sx = (float(s) for s in volume.spacing)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    keep = dict(patient or {}) if keep_identifiers else {}
    deriv = derivation or (f"Decoded from a lossy {method} bitstream by DMIC Studio"
                           + (f", compression ratio {compression_ratio:.1f}:1" if compression_ratio else ""))
    datasets = []
    for k in range(hu.shape[0]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.Manufacturer = "DMIC Studio"
        ds.SeriesDescription = description[:64]
        ds.DerivationDescription = deriv[:1024]
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.StudyID = ""
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                        "ReferringPhysicianName", "StudyDate", "StudyTime"):
            setattr(ds, keyword, "")
        for keyword, value in keep.items():
            if keyword in IDENTIFIER_KEYWORDS:
                setattr(ds, keyword, value)
        if not keep:
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = "DMIC Studio export: no identifiers written"
        ds.PositionReferenceIndicator = ""
        # Type 2 / 2C attributes the CT Image and General Series modules require to be present:
        # empty (unknown) rather than invented; dciodvfy reports errors without them.
        ds.KVP = ""
        ds.PatientPosition = ""
        ds.BodyPartExamined = body_part
        ds.ImagePositionPatient = [_ds(v) for v in (aff @ np.array([0.0, 0.0, k, 1.0]))[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*cols_dir, *rows_dir)]
        ds.SliceLocation = _ds(float((aff @ np.array([0.0, 0.0, k, 1.0]))[2]))
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "300"
        ds.WindowWidth = "900"
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "01"
        if compression_ratio:
            ds.LossyImageCompressionRatio = [_ds(float(compression_ratio))]
        ds.LossyImageCompressionMethod = [method]
        ds.PixelData = np.ascontiguousarray(hu[k]).tobytes()
        datasets.append(ds)
    return datasets


def export_dicom_series(volume: Volume, out_dir: str | Path, array_zyx: np.ndarray | None = None,
                        **kwargs: Any) -> Path:
    """Write the series as ``out_dir/IM00001.dcm ...``; the folder appears complete or not at all."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for k, ds in enumerate(build_series(volume, array_zyx, **kwargs)):
            ds.save_as(tmp / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def dicom_zip_bytes(volume: Volume, array_zyx: np.ndarray | None = None, *, folder: str = "DMIC_SERIES",
                    **kwargs: Any) -> bytes:
    """The series as a zip (one folder of ``.dcm`` files), in memory, for downloads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, ds in enumerate(build_series(volume, array_zyx, **kwargs)):
            one = io.BytesIO()
            ds.save_as(one, enforce_file_format=True)
            zf.writestr(f"{folder}/IM{k + 1:05d}.dcm", one.getvalue())
    return buffer.getvalue()
