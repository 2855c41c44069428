"""Read CT volumes and vessel labels from files into a canonical :class:`~dmic_core.volume.Volume`.

Readers follow MONAI's contract: a class per backend with ``verify_suffix`` (can it take this
path?) and ``read`` (file-ordered voxels, RAS affine and non-identifying facts); the
:data:`READERS` registry picks one by path. Everything format-specific ends at ``read``: the HU
checks and the reorientation to canonical frames (:func:`dmic_core.io.orientation.to_canonical`)
are shared, so every format lands on the same array for the same anatomy.

Bad input of any kind becomes a one-line :class:`~dmic_core.errors.DmicInputError` naming the file.
"""

from __future__ import annotations

import abc
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import nibabel as nib
from isal import igzip as isal_gzip
import numpy as np
import SimpleITK as sitk
from nibabel import orientations as nio

from dmic_core.errors import DmicInputError
from dmic_core.io.orientation import to_canonical
from dmic_core.volume import Volume

#: Largest size of one axis and of the whole volume we accept (a CCTA is ~512x512x300); beyond
#: that the header is corrupt or the data is not a CT volume, and reading it would exhaust memory.
MAX_AXIS = 8192
MAX_VOXELS = 1 << 30
#: Smallest in-plane/through-plane count: one slice is a 2-D image, not a volume.
MIN_AXIS = 2
#: Plausible voxel sizes in mm; outside them the geometry is broken.
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 100.0

#: Zip safety limits: total bytes extracted and number of members.
MAX_ZIP_UNCOMPRESSED_BYTES = 4 << 30
MAX_ZIP_MEMBERS = 50_000

#: Most bytes one compressed byte can become in a deflate stream (zlib's documented ~1032:1).
GZIP_MAX_RATIO = 1032
#: Most a DICOM zip may expand (uncompressed : compressed bytes), per member and for the whole
#: archive (declared sizes against the file's real size). Measured: a real enhanced CT
#: (eCT_Supplemental.dcm) deflates 7.8:1, an exported phantom series 1.6:1; zeros deflate ~1030:1.
#: Beyond 100:1 (13x the most compressible real DICOM measured) an archive is refused as a zip
#: bomb before anything is extracted.
ZIP_MAX_RATIO = 100
#: Members and archives expanding to less than this are not held to the ratio (a README, a tiny
#: test series of constant slices): they cannot fill a disk.
ZIP_RATIO_MIN_BYTES = 1 << 20
#: Space an extraction must leave free on the filesystem it writes to.
ZIP_FREE_RESERVE_BYTES = 16 << 20

#: Tolerance (mm) when comparing the grid of a label with its image.
GRID_ATOL_MM = 1e-3

_INT16 = np.iinfo(np.int16)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class RawImage:
    """What a reader returns: voxels in the file's own (x, y, z) order and their geometry.

    Attributes:
        data: 3-D array in file voxel order (any numeric dtype, rescale already applied).
        affine: 4x4 voxel-to-RAS+ matrix of that grid.
        format: short format name for ``Volume.source``.
        meta: non-identifying facts for ``Volume.meta``.
    """

    data: np.ndarray
    affine: np.ndarray
    format: str
    meta: dict[str, Any] = field(default_factory=dict)


class ImageReader(abc.ABC):
    """One file format: says whether it takes a path and reads it."""

    format: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()

    def verify_suffix(self, path: Path) -> bool:
        """Whether this reader handles ``path`` (by its name; contents are checked in ``read``)."""
        return path.is_file() and path.name.lower().endswith(self.suffixes)

    @abc.abstractmethod
    def read(self, path: Path) -> RawImage:
        """Voxels and geometry of ``path``; raises :class:`DmicInputError` on bad input."""


class NiftiReader(ImageReader):
    """NIfTI-1/2 via nibabel (scl_slope/scl_inter applied, best affine: sform, else qform)."""

    format = "nifti"
    suffixes = (".nii", ".nii.gz")

    def read(self, path: Path) -> RawImage:
        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises many types for non-NIfTI bytes
            raise DmicInputError(f"not a readable NIfTI image ({_short(exc)})", path) from exc
        shape = _spatial_shape(tuple(int(s) for s in img.shape), path)
        _check_scalar_dtype(img.get_data_dtype(), path)
        if str(path).lower().endswith(".gz"):
            img = _read_gzipped_nifti(img, path)
        data = _guarded_read(lambda: np.asanyarray(img.dataobj), path)
        # nibabel moves scl_slope/scl_inter from the header into the array proxy on load
        slope = float(getattr(img.dataobj, "slope", 1.0))
        inter = float(getattr(img.dataobj, "inter", 0.0))
        meta: dict[str, Any] = {
            "stored_dtype": str(img.get_data_dtype()),
            "qform_code": int(img.header["qform_code"]),
            "sform_code": int(img.header["sform_code"]),
        }
        if slope != 1.0 or inter != 0.0:
            meta["rescale"] = [slope, inter]
        return RawImage(data.reshape(shape), np.asarray(img.affine, dtype=np.float64), self.format, meta)


def _read_gzipped_nifti(header_img: Any, path: Path) -> Any:
    """Decompress a .nii.gz with ISA-L (about 2x faster than zlib), reading no more than the
    header says the file holds, and hand nibabel the bytes: the app's first slice waits on this."""
    expected = int(header_img.dataobj.offset) + int(np.prod(header_img.shape, dtype=np.int64)) * \
        np.dtype(header_img.get_data_dtype()).itemsize
    # deflate expands at most ~1032:1: a header needing more than that is lying (found by fuzzing:
    # a forged vox_offset made read() allocate tens of GB before finding the stream short)
    most = path.stat().st_size * GZIP_MAX_RATIO + (1 << 16)
    if expected > most:
        raise DmicInputError(f"truncated: the header needs {expected} bytes, more than this gzip file can "
                             f"hold ({most})", path)
    try:
        with isal_gzip.open(path, "rb") as handle:
            raw = handle.read(expected)
    except (OSError, EOFError, ValueError) as exc:
        raise DmicInputError(f"truncated or corrupt gzip stream ({_short(exc)})", path) from exc
    if len(raw) < expected:
        raise DmicInputError(f"truncated: {len(raw)} bytes where the header needs {expected}", path)
    try:
        return type(header_img).from_bytes(raw)
    except Exception as exc:  # nibabel re-parses the header from the bytes: WrapStructError, ...
        raise DmicInputError(f"not a readable NIfTI image ({_short(exc)})", path) from exc


class ITKReader(ImageReader):
    """NRRD and MetaImage via SimpleITK (LPS geometry converted to a RAS affine)."""

    format = "itk"
    suffixes = (".nrrd", ".nhdr", ".mha", ".mhd")

    def read(self, path: Path) -> RawImage:
        fmt = "nrrd" if path.name.lower().endswith((".nrrd", ".nhdr")) else "metaimage"
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise DmicInputError(f"not a readable {fmt} image ({_short(exc)})", path) from exc
        _spatial_shape(tuple(reader.GetSize()), path)
        image = _guarded_read(reader.Execute, path)
        data, affine = _sitk_to_raw(image, path)
        return RawImage(data, affine, fmt, {})


class DicomReader(ImageReader):
    """DICOM: a series folder (searched recursively), a .zip of one, or a single (multi-frame) file.

    The series with the most files wins when there are several; slice positions must be evenly
    spaced (a gap means missing slices, which would silently distort the anatomy).
    """

    format = "dicom"
    suffixes = (".zip", ".dcm", ".dicom")

    def verify_suffix(self, path: Path) -> bool:
        return path.is_dir() or super().verify_suffix(path) or (path.is_file() and _has_dicom_magic(path))

    def read(self, path: Path) -> RawImage:
        if path.is_dir():
            return _read_dicom_tree(path, path, None)
        if path.name.lower().endswith(".zip"):
            with tempfile.TemporaryDirectory(prefix="dmic-dicom-zip-") as tmp:
                _extract_zip_safely(path, Path(tmp))
                return _read_dicom_tree(Path(tmp), path, Path(tmp))
        return _read_dicom_files([str(path)], path, None)


#: Registered readers by name, tried in this order (MONAI's ``SUPPORTED_READERS``).
READERS: dict[str, type[ImageReader]] = {"nifti": NiftiReader, "itk": ITKReader, "dicom": DicomReader}


def reader_for(path: str | Path) -> ImageReader:
    """The first registered reader that takes ``path``."""
    path = Path(path)
    if not path.exists():
        raise DmicInputError("file not found", path)
    for cls in READERS.values():
        reader = cls()
        if reader.verify_suffix(path):
            return reader
    raise DmicInputError("not a supported image (expected .nii, .nii.gz, .nrrd, .mha, .mhd, .dcm, "
                         "or a DICOM folder / .zip)", path)


def load_volume(path: str | Path) -> Volume:
    """Read a CT volume in HU and reorient it to canonical LPS frames.

    Raises:
        DmicInputError: the file is missing, unreadable, unsafe, not 3-D, holds non-finite or
            out-of-int16 values, or does not hold CT intensities (see :func:`_check_ct_intensities`).
    """
    path = Path(path)
    raw = reader_for(path).read(path)
    _check_affine(raw.affine, path)
    hu = _to_hu_int16(raw.data, path)
    _check_ct_intensities(raw.data.dtype, hu, path)
    canonical, transform, spacing = to_canonical(hu, raw.affine)
    meta = dict(raw.meta)
    meta["file_dtype"] = str(raw.data.dtype)
    return Volume(canonical, spacing, raw.affine.copy(), tuple(int(s) for s in raw.data.shape),
                  transform, {"path": str(path), "format": raw.format}, meta)


def load_label(path: str | Path, like: Volume) -> np.ndarray:
    """Read a vessel label on the grid of ``like`` as a canonical uint8 0/1 array.

    Any label value > 0 counts as vessel (ImageCAS labels are 0/1, multi-class files merge).
    The label may be stored in another voxel order than the image, but must describe the same
    voxels: same canonical shape and the same canonical affine within :data:`GRID_ATOL_MM`.
    """
    path = Path(path)
    raw = reader_for(path).read(path)
    _check_affine(raw.affine, path)
    data = raw.data
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DmicInputError("label contains NaN or infinite voxels", path)
    mask = (data > 0).astype(np.uint8)
    canonical, transform, _spacing = to_canonical(mask, raw.affine)
    if canonical.shape != like.hu.shape:
        raise DmicInputError(f"label grid does not match the image: canonical shape {canonical.shape} "
                             f"vs image {like.hu.shape}", path)
    label_aff = raw.affine @ nio.inv_ornt_aff(transform, raw.data.shape)
    image_aff = like.affine @ nio.inv_ornt_aff(like.to_canonical, like.file_shape)
    diff = float(np.abs(label_aff - image_aff).max())
    if diff > GRID_ATOL_MM:
        raise DmicInputError(f"label grid does not match the image: affines differ by up to {diff:.4g} mm",
                             path)
    return canonical


def find_imagecas_pairs(folder: str | Path) -> list[tuple[str, Path, Path | None]]:
    """ImageCAS cases in ``folder`` (recursively): ``(id, {id}.img.nii.gz, {id}.label.nii.gz or None)``.

    Sorted by id, numerically where ids are numbers (ImageCAS ids are 1..1000).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DmicInputError("not a folder", folder)
    pattern = re.compile(r"^(?P<id>.+)\.img\.nii(\.gz)?$")
    pairs = []
    for img in folder.rglob("*.img.nii*"):
        match = pattern.match(img.name)
        if not match or not img.is_file():
            continue
        case_id = match.group("id")
        candidates = (img.with_name(f"{case_id}.label.nii.gz"), img.with_name(f"{case_id}.label.nii"))
        label = next((p for p in candidates if p.is_file()), None)
        pairs.append((case_id, img, label))
    return sorted(pairs, key=lambda p: (0, int(p[0]), "") if p[0].isdigit() else (1, 0, p[0]))


# --- shared checks ---------------------------------------------------------------------------

def _short(exc: BaseException) -> str:
    """One line of an exception for a user-facing message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _guarded_read(fn, path: Path):
    """Run a library read, turning its failures (truncated, corrupt, I/O) into input errors."""
    try:
        return fn()
    except MemoryError:
        raise
    except Exception as exc:
        raise DmicInputError(f"truncated or corrupt image data ({_short(exc)})", path) from exc


def _spatial_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """The 3-D shape of data of ``shape``: refuses 2-D, 4-D (unless trailing dims are 1), absurd sizes."""
    if len(shape) < 3:
        raise DmicInputError(f"{len(shape)}-D data {shape}: need a 3-D volume", path)
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise DmicInputError(f"{len(shape)}-D data {shape}: need a single 3-D volume", path)
    spatial = tuple(int(s) for s in shape[:3])
    if any(s < MIN_AXIS for s in spatial):
        raise DmicInputError(f"data of shape {spatial} is 2-D (an axis has fewer than {MIN_AXIS} voxels)",
                             path)
    if any(s > MAX_AXIS for s in spatial) or int(np.prod(spatial, dtype=np.int64)) > MAX_VOXELS:
        raise DmicInputError(f"absurd dimensions {spatial} (limit {MAX_AXIS} per axis, "
                             f"{MAX_VOXELS} voxels)", path)
    return spatial  # type: ignore[return-value]


def _check_scalar_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise DmicInputError(f"voxel type {dtype} is not a scalar intensity", path)


def _check_affine(affine: np.ndarray, path: Path) -> None:
    """Refuse broken geometry: non-finite, singular or absurd voxel sizes."""
    if not np.isfinite(affine).all():
        raise DmicInputError("voxel-to-world matrix has non-finite entries", path)
    sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if (sizes < MIN_SPACING_MM).any() or (sizes > MAX_SPACING_MM).any():
        raise DmicInputError(f"absurd voxel size {tuple(round(float(s), 6) for s in sizes)} mm", path)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(sizes)):
        raise DmicInputError("voxel-to-world matrix is singular (voxel axes are not independent)", path)


def _to_hu_int16(data: np.ndarray, path: Path) -> np.ndarray:
    """HU values as int16: float data rounded, NaN/inf and values beyond int16 refused."""
    _check_scalar_dtype(data.dtype, path)
    if data.dtype == np.int16:
        return data
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise DmicInputError("image contains NaN or infinite voxels", path)
        data = np.rint(data)
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo < _INT16.min or hi > _INT16.max:
        raise DmicInputError(f"values {lo:g}..{hi:g} do not fit 16-bit HU (is this a CT image?)", path)
    return data.astype(np.int16)


def _check_ct_intensities(stored: np.dtype, hu: np.ndarray, path: Path) -> None:
    """Refuse images that cannot be CT in Hounsfield units (documented in docs/batch.md).

    DMIC's windows, QP mapping and segmenter assume HU; an MR or a photo would be "compressed"
    into meaningless numbers, so it is refused with the reason instead:

    * 8-bit voxels (no rescale to HU): a photo, a screenshot or a mask, never a CT in HU;
    * no voxel below 0 HU in a non-blank image: air, lung and fat are negative in every CT of
      the chest, so this is MR-like data or CT stored without its rescale intercept.
    """
    if stored.kind in "biu" and stored.itemsize == 1:
        lo, hi = (int(hu.min()), int(hu.max())) if hu.size else (0, 0)
        raise DmicInputError(f"8-bit voxels ({lo}..{hi}): not a CT volume in Hounsfield units "
                             "(a photo, screenshot or mask?)", path)
    if hu.size:
        lo, hi = int(hu.min()), int(hu.max())
        if lo >= 0 and hi > 0:
            raise DmicInputError(f"no voxel below 0 HU (values {lo}..{hi}): not CT in Hounsfield units "
                                 "(MR-like data, or CT stored without its rescale intercept?)", path)


# --- SimpleITK -------------------------------------------------------------------------------

def _sitk_to_raw(image: sitk.Image, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """File-ordered (x, y, z) data and RAS affine of a SimpleITK image (LPS direction/origin)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DmicInputError(f"{image.GetNumberOfComponentsPerPixel()} components per voxel: not a "
                             "scalar CT image", path)
    dim = image.GetDimension()
    size = tuple(image.GetSize())
    shape = _spatial_shape(size, path)
    array = sitk.GetArrayFromImage(image)  # reversed axes: (..., z, y, x)
    data = array.transpose(tuple(range(dim - 1, -1, -1))).reshape(shape)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:3]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)  # signed spacing keeps its step
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return data, affine


# --- DICOM -----------------------------------------------------------------------------------

def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_dicom_tree(root: Path, shown: Path, extracted_root: Path | None) -> RawImage:
    """The largest DICOM series anywhere under ``root``."""
    series: list[list[str]] = []
    for dirpath, _dirs, files in os.walk(root):
        if not files:
            continue
        for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath):
            names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, sid))
            if names:
                series.append(names)
    if not series:
        raise DmicInputError("no DICOM image found", shown)
    series.sort(key=len, reverse=True)
    raw = _read_dicom_files(series[0], shown, extracted_root)
    raw.meta["dicom_series_found"] = len(series)
    return raw


def _read_dicom_files(files: list[str], shown: Path, extracted_root: Path | None) -> RawImage:
    """One series (or one multi-frame file) via SimpleITK; slice spacing checked with pydicom."""
    import pydicom

    try:
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception as exc:
        raise DmicInputError(f"not a readable DICOM file ({_short(exc)})", shown) from exc
    if "Rows" not in first or "Columns" not in first:
        raise DmicInputError("DICOM object holds no image", shown)
    if len(files) > 1:
        _check_slice_positions(files, shown)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        image = _guarded_read(reader.Execute, shown)
    else:
        image = _guarded_read(lambda: sitk.ReadImage(files[0]), shown)
    data, affine = _sitk_to_raw(image, shown)
    reference = Path(files[0])
    meta: dict[str, Any] = {
        "dicom_files": len(files),
        "modality": str(first.get("Modality", "")) or None,
        "sop_class_uid": str(first.get("SOPClassUID", "")) or None,
        "number_of_frames": int(first.get("NumberOfFrames", 1) or 1),
        # Where a DICOM export finds a template header: the file itself, or the member of the zip.
        "dicom_reference": ({"path": str(shown), "member": reference.relative_to(extracted_root).as_posix()}
                            if extracted_root is not None else {"path": str(reference), "member": None}),
    }
    return RawImage(data, affine, "dicom", meta)


def _check_slice_positions(files: list[str], shown: Path) -> None:
    """Refuse duplicate or unevenly spaced slices (missing files, mixed acquisitions)."""
    import pydicom

    positions = []
    normal = None
    for name in files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True,
                                 specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
            ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
            if normal is None:
                iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
                normal = np.cross(iop[:3], iop[3:])
        except Exception as exc:
            raise DmicInputError(f"DICOM slice {Path(name).name} has no usable position ({_short(exc)})",
                                 shown) from exc
        positions.append(float(ipp @ normal))
    steps = np.diff(np.sort(positions))
    if (steps < 1e-3).any():
        raise DmicInputError("DICOM series has duplicate slice positions (several acquisitions mixed?)",
                             shown)
    if steps.max() - steps.min() > 0.01 * float(np.median(steps)) + 1e-3:
        raise DmicInputError(f"DICOM slice spacing is uneven ({steps.min():.3g}..{steps.max():.3g} mm): "
                             "missing slices?", shown)


def _extract_zip_safely(path: Path, dest: Path) -> None:
    """Extract ``path`` into ``dest`` refusing path traversal, links, encryption and zip bombs."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DmicInputError(f"not a valid zip archive ({_short(exc)})", path) from exc
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise DmicInputError("zip archive is empty", path)
        if len(members) > MAX_ZIP_MEMBERS:
            raise DmicInputError(f"zip archive has {len(members)} files (limit {MAX_ZIP_MEMBERS})", path)
        for info in members:
            _check_zip_member(info, path)
            _check_zip_ratio(info.file_size, info.compress_size, f"zip member {info.filename!r}", path)
        declared = sum(m.file_size for m in members)
        if declared > MAX_ZIP_UNCOMPRESSED_BYTES:
            raise DmicInputError(f"zip archive expands to {declared} bytes (limit "
                                 f"{MAX_ZIP_UNCOMPRESSED_BYTES}): refused as a possible zip bomb", path)
        # the archive's real size, not the members' declared compressed sizes: members may overlap
        _check_zip_ratio(declared, path.stat().st_size, "zip archive", path)
        free = shutil.disk_usage(dest).free
        if declared + ZIP_FREE_RESERVE_BYTES > free:
            raise DmicInputError(f"zip archive expands to {declared} bytes, more than the {free} bytes free "
                                 f"where it would be extracted (keeping {ZIP_FREE_RESERVE_BYTES} spare)", path)
        written = 0
        root = dest.resolve()
        for info in members:
            target = (root / info.filename.replace("\\", "/")).resolve()
            if root not in target.parents:
                raise DmicInputError(f"unsafe zip member {info.filename!r} (outside the archive root)", path)
            try:
                # inside the try: a member may name a folder that another member wrote as a file
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_ZIP_UNCOMPRESSED_BYTES:
                            raise DmicInputError("zip archive expands beyond the size limit "
                                                 f"({MAX_ZIP_UNCOMPRESSED_BYTES} bytes): refused as a "
                                                 "possible zip bomb", path)
                        out.write(chunk)
            except DmicInputError:
                raise
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as exc:
                raise DmicInputError(f"cannot extract {info.filename!r} ({_short(exc)})", path) from exc


def _check_zip_ratio(expanded: int, compressed: int, what: str, path: Path) -> None:
    """Refuse ``what`` when it expands more than :data:`ZIP_MAX_RATIO` (DICOM never does)."""
    if expanded > ZIP_RATIO_MIN_BYTES and expanded > ZIP_MAX_RATIO * max(compressed, 1):
        raise DmicInputError(f"{what} expands {expanded / max(compressed, 1):.0f}:1 ({compressed} to {expanded} "
                             f"bytes; DICOM stays far below {ZIP_MAX_RATIO}:1): refused as a possible zip bomb",
                             path)


def _check_zip_member(info: zipfile.ZipInfo, path: Path) -> None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DmicInputError(f"unsafe zip member {info.filename!r} (absolute path)", path)
    if ".." in name.split("/"):
        raise DmicInputError(f"unsafe zip member {info.filename!r} (parent-directory path)", path)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DmicInputError(f"unsafe zip member {info.filename!r} (symbolic link)", path)
    if info.flag_bits & 0x1:
        raise DmicInputError(f"zip member {info.filename!r} is encrypted", path)


__all__ = ["READERS", "DicomReader", "ITKReader", "ImageReader", "NiftiReader", "RawImage",
           "find_imagecas_pairs", "load_label", "load_volume", "reader_for"]
