"""Write canonical arrays (decoded HU, masks) back onto exactly the grid of the input file.

The array is put back in the file's voxel order with :func:`dmic_core.io.orientation.from_canonical`
and saved with the input's affine, so the output overlays the original in any viewer. Files are
written under a temporary name in the target folder and moved into place with ``os.replace``: a
crash or a full disk never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
from isal import igzip as isal_gzip

from dmic_core.io.orientation import from_canonical
from dmic_core.volume import Volume

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Deflate level of written .nii.gz files: nibabel's own default (1, fast), done by ISA-L.
GZIP_LEVEL = 1
_ITK_SUFFIXES = (".nrrd", ".mha")


def save_nifti(volume: Volume, array_zyx: np.ndarray, path: str | Path) -> Path:
    """Save a canonical array on ``volume``'s file grid as NIfTI (.nii or .nii.gz).

    The dtype is kept (int16 HU, uint8 masks) with no intensity scaling. The qform and sform are
    both set to the input affine (the source's codes are kept when it had them, else 1 =
    scanner) so every reader sees the same geometry.
    """
    path = Path(path)
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise ValueError(f"NIfTI output needs a .nii or .nii.gz name, got {path.name}")
    data = from_canonical(np.asarray(array_zyx), volume)
    img = nib.Nifti1Image(data, volume.affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    qcode = int(volume.meta.get("qform_code") or 1)
    scode = int(volume.meta.get("sform_code") or 1)
    img.set_sform(volume.affine, code=scode)
    img.set_qform(volume.affine, code=qcode)
    if path.name.lower().endswith(".nii.gz"):
        return _atomic_write(path, ".nii.gz", lambda tmp: _save_gzipped_nifti(img, tmp))
    return _atomic_write(path, ".nii", lambda tmp: nib.save(img, str(tmp)))


def _save_gzipped_nifti(img: nib.Nifti1Image, path: Path) -> None:
    """nibabel writes the NIfTI bytes, ISA-L deflates them: a standard gzip file, about 4x faster
    than zlib at the same level (a 275-frame reconstruction: 0.5 s instead of 2 s of deflate, issue
    17), the mirror of the reader's ISA-L inflate. No time and no (temporary) file name in the gzip
    header: the same image gives the same bytes."""
    with open(path, "wb") as raw, isal_gzip.IGzipFile("", "wb", compresslevel=GZIP_LEVEL, fileobj=raw,
                                                      mtime=0) as handle:
        img.to_stream(handle)


def save_image(volume: Volume, array_zyx: np.ndarray, path: str | Path) -> Path:
    """Save on ``volume``'s file grid, format by suffix: NIfTI, or NRRD / MetaImage (.mha) via SimpleITK.

    ``.mhd`` is not offered: its separate data file cannot be moved into place atomically.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return save_nifti(volume, array_zyx, path)
    if not name.endswith(_ITK_SUFFIXES):
        raise ValueError(f"unsupported output type {path.name} (use .nii, .nii.gz, .nrrd or .mha)")
    import SimpleITK as sitk

    data_xyz = from_canonical(np.asarray(array_zyx), volume)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data_xyz.transpose(2, 1, 0)))
    lps = _RAS_TO_LPS @ volume.affine[:3, :3]
    spacing = np.sqrt((lps**2).sum(axis=0))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in _RAS_TO_LPS @ volume.affine[:3, 3]])
    suffix = ".nrrd" if name.endswith(".nrrd") else ".mha"
    return _atomic_write(path, suffix, lambda tmp: sitk.WriteImage(image, str(tmp), True))


def _atomic_write(path: Path, suffix: str, write: Callable[[Path], object]) -> Path:
    """Run ``write`` on a temporary file next to ``path`` (same suffix), then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = ["save_image", "save_nifti"]
