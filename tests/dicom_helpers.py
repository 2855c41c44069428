"""A tiny CT DICOM slice written with pydicom, shared by the loader and hostile-input tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def dicom_slice(path: Path, z: float, rows: int = 8, cols: int = 8, series: str = "1.2.3",
                intercept: float = 0) -> Path:
    """One axial CT slice at height ``z`` mm, stored value 40 everywhere."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1.0, 0, 0, 0, 1.0, 0]
    ds.PixelSpacing, ds.Rows, ds.Columns = [0.5, 0.5], rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
    ds.PixelData = np.full((rows, cols), 40, dtype=np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
