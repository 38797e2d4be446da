"""Reading and writing volumes: NIfTI through nibabel, NRRD/MHA/MHD through SimpleITK.

Every volume is returned with its 4x4 voxel-to-world affine in RAS+ millimetres (the NIfTI
convention); SimpleITK's LPS geometry is converted. Checks happen on the header before the
voxels are read, so an absurd file is refused before any memory is allocated for it.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from medmoe.data.dicom import is_dicom_path, read_series
from medmoe.data.headers import (
    UnsupportedVoxelType,
    check_local_data_file,
    read_mhd_data_file,
    read_nrrd_fields,
)
from medmoe.data.volume import (
    Volume,
    check_geometry,
    check_values,
)
from medmoe.errors import InputError, first_line
from medmoe.utils.files import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


class _QuietNibabel:
    """Silences warnings and nibabel's own log handler while files are read.

    Warning filters are process-wide, so the silence is reference-counted: concurrent reads (the
    server reads in worker threads) share one window, and the last one out restores the filters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[warnings.catch_warnings, int] | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                ctx = warnings.catch_warnings()
                ctx.__enter__()
                warnings.simplefilter("ignore")
                logger = logging.getLogger("nibabel.global")
                self._saved = (ctx, logger.level)
                logger.setLevel(logging.CRITICAL + 1)  # nibabel logs even the errors it raises
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._saved is not None:
                    ctx, level = self._saved
                    logging.getLogger("nibabel.global").setLevel(level)
                    ctx.__exit__(None, None, None)
                    self._saved = None


_quiet_nibabel = _QuietNibabel()


def _voxel_dtype(dtype: np.dtype, source: str) -> np.dtype:
    """``dtype`` if it is a real scalar type medmoe reads; complex, RGB and the rest are refused."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise UnsupportedVoxelType(f"{source}: complex voxels are refused")
    if dtype.fields is not None or dtype.kind == "V":
        raise UnsupportedVoxelType(f"{source}: RGB/RGBA (structured) voxels are refused")
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise UnsupportedVoxelType(f"{source}: unsupported voxel type {dtype.name}")
    return dtype


def _read_nifti(path: Path, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    with _quiet_nibabel():
        try:
            img = nib.load(str(path))
            dtype = _voxel_dtype(img.get_data_dtype(), str(path))
            shape = check_geometry(
                img.shape, img.affine, source=str(path), dtype=dtype, limit=max_bytes
            )
            data = np.asanyarray(img.dataobj)
        except InputError:
            raise
        except Exception as err:  # nibabel raises many types for truncated or corrupt files
            first = first_line(err)
            raise InputError(f"cannot read {path}: {type(err).__name__}: {first}") from None
    return np.asarray(data).reshape(shape), np.asarray(img.affine, dtype=np.float64)


def _check_itk_data_file(path: Path, suffix: str) -> None:
    """A detached header (NRRD ``data file``, MetaImage ``ElementDataFile``) may name only a
    regular file in its own folder; checked on the header text before ITK opens anything."""
    if suffix in (".nrrd", ".nhdr"):
        value = read_nrrd_fields(path, attached=False).get("data file")
    else:
        value = read_mhd_data_file(path)
        if value.upper() == "LOCAL":
            value = None
    if value is not None:
        check_local_data_file(path, value)


def _itk_dtype(sitk, reader, source: str) -> np.dtype:
    """The numpy type of a scalar ITK image from its header; complex and vector types refused."""
    pixel = reader.GetPixelID()
    if pixel in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise UnsupportedVoxelType(f"{source}: complex voxels are refused")
    if reader.GetNumberOfComponents() != 1:
        raise UnsupportedVoxelType(f"{source}: multi-component (vector, RGB) voxels are refused")
    names = ("UInt8", "Int8", "UInt16", "Int16", "UInt32", "Int32", "UInt64", "Int64")
    table = {getattr(sitk, f"sitk{n}"): np.dtype(n.lower()) for n in names}
    table.update({sitk.sitkFloat32: np.dtype(np.float32), sitk.sitkFloat64: np.dtype(np.float64)})
    if pixel not in table:
        raise UnsupportedVoxelType(f"{source}: unsupported voxel type")
    return table[pixel]


def _read_itk(path: Path, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        import SimpleITK as sitk
    except ImportError:
        raise InputError(
            f"reading {path.suffix} files needs SimpleITK: pip install 'medmoe[itk]'"
        ) from None
    suffix = _suffix(path)
    _check_itk_data_file(path, suffix)
    try:
        reader = sitk.ImageFileReader()
        reader.SetImageIO("NrrdImageIO" if suffix in (".nrrd", ".nhdr") else "MetaImageIO")
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        dtype = _itk_dtype(sitk, reader, str(path))
        size = reader.GetSize()  # (x, y, z)
        spacing = np.array(reader.GetSpacing(), dtype=np.float64)
        direction = np.array(reader.GetDirection(), dtype=np.float64)
        origin = np.array(reader.GetOrigin(), dtype=np.float64)
        if len(size) != 3:
            raise InputError(f"{path}: expected a 3-D volume, got {len(size)}-D")
        lps = np.eye(4)
        lps[:3, :3] = direction.reshape(3, 3) * spacing
        lps[:3, 3] = origin
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK is LPS, NIfTI is RAS
        check_geometry(size, affine, source=str(path), dtype=dtype, limit=max_bytes)
        array = sitk.GetArrayFromImage(reader.Execute()).transpose(2, 1, 0)  # (z,y,x) -> (x,y,z)
    except InputError:
        raise
    except Exception as err:
        first = first_line(err)
        raise InputError(f"cannot read {path}: {type(err).__name__}: {first}") from None
    return np.ascontiguousarray(array), affine


def _read(path: str | os.PathLike, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder is read as a DICOM series only where an image is read")
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    suffix = _suffix(path)
    if suffix in NIFTI_SUFFIXES:
        array, affine = _read_nifti(path, max_bytes)
    elif suffix in ITK_SUFFIXES:
        array, affine = _read_itk(path, max_bytes)
    else:
        raise InputError(
            f"{path}: unsupported file type {suffix!r} "
            f"(expected {', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)}, or a DICOM series)"
        )
    return array, affine, str(path)


def load_volume(
    path: str | os.PathLike, *, max_bytes: int | None = None, series: str | None = None
) -> Volume:
    """Read an image as float32 with its affine; refuse non-3-D, empty, constant or NaN/Inf data.

    ``path`` is a NIfTI/NRRD/MHA file, or a DICOM series: a folder, a ``.zip`` or one of its
    ``.dcm`` files (``series`` picks a SeriesInstanceUID among several; see
    :func:`medmoe.data.dicom.read_series`). ``max_bytes`` caps the memory the volume may need
    (default :func:`memory_limit_bytes`).
    """
    if is_dicom_path(path):
        return read_series(path, series=series, max_bytes=max_bytes).volume
    if series is not None:
        raise InputError(f"{path}: --series applies to a DICOM folder, zip or .dcm file only")
    array, affine, source = _read(path, max_bytes)
    array = array.astype(np.float32, copy=False)
    check_values(array, source=source, kind="image")
    return Volume(array, affine)


def load_label(path: str | os.PathLike, *, max_bytes: int | None = None) -> Volume:
    """Read a label map as int64 with its affine; refuse non-integer or negative labels.

    ``max_bytes`` caps the memory the volume may need (default :func:`memory_limit_bytes`).
    """
    array, affine, source = _read(path, max_bytes)
    check_values(np.asarray(array, dtype=np.float64), source=source, kind="label")
    as_int = np.rint(array).astype(np.int64)
    if not np.array_equal(as_int, array):
        raise InputError(f"{source}: label map has non-integer values")
    if as_int.min() < 0:
        raise InputError(f"{source}: label map has negative values")
    return Volume(as_int, affine)


def nifti_bytes(array: np.ndarray, affine: np.ndarray, *, gz: bool = True) -> bytes:
    """``array`` with ``affine`` as the bytes of a NIfTI-1 file (gzipped by default); the affine
    is stored as both qform and sform (code 1, scanner), so every reader agrees on it."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    payload = img.to_bytes()
    return gzip.compress(payload, compresslevel=6) if gz else payload


def save_volume(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` with ``affine`` as NIfTI (``.nii`` or ``.nii.gz``), atomically."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in NIFTI_SUFFIXES:
        raise InputError(f"{path}: output must end in .nii or .nii.gz")
    payload = nifti_bytes(array, affine, gz=suffix == ".nii.gz")
    with atomic_write(path) as tmp:
        tmp.write_bytes(payload)
    return path
