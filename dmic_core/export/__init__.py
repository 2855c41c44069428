"""Exports of decoded volumes in clinical formats (DICOM series: :mod:`dmic_core.export.dicom`)."""
