"""Volumes in and out: readers (NIfTI, DICOM, NRRD/MetaImage), writers, canonical orientation."""

from dmic_core.io.readers import (READERS, DicomReader, ImageReader, ITKReader, NiftiReader, RawImage,
                                  find_imagecas_pairs, load_label, load_volume, reader_for)
from dmic_core.io.writers import save_image, save_nifti

__all__ = ["READERS", "DicomReader", "ITKReader", "ImageReader", "NiftiReader", "RawImage",
           "find_imagecas_pairs", "load_label", "load_volume", "reader_for", "save_image", "save_nifti"]
