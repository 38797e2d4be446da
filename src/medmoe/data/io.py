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
from typing import NamedTuple

import nibabel as nib
import numpy as np
from numpy.typing import DTypeLike

from medmoe.data.headers import (
    UnsupportedVoxelType,
    check_local_data_file,
    check_memory,
    read_mhd_data_file,
    read_nrrd_fields,
)
from medmoe.errors import InputError, first_line
from medmoe.utils.files import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
MIN_SPACING_MM = 1e-3
MAX_SPACING_MM = 1e3


class Volume(NamedTuple):
    """A 3-D array and its voxel-to-world (RAS+, mm) affine."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return voxel_spacing(self.affine)


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes in mm: the lengths of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def memory_limit_bytes() -> int:
    """Largest array medmoe will allocate for one volume: ``MEDMOE_MAX_VOLUME_BYTES`` or half of RAM."""
    env = os.environ.get("MEDMOE_MAX_VOLUME_BYTES")
    if env:
        try:
            limit = int(env)
        except ValueError:
            limit = 0
        if limit < 1:
            raise InputError(f"MEDMOE_MAX_VOLUME_BYTES must be a positive integer, got {env!r}")
        return limit
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def check_geometry(
    shape: tuple[int, ...],
    affine: np.ndarray,
    *,
    source: str,
    dtype: DTypeLike = np.float32,
    limit: int | None = None,
) -> tuple[int, ...]:
    """Validate shape and affine from a header; return the 3-D shape (a singleton 4th axis dropped).

    The memory need, ``volume_memory_bytes(shape, dtype)``, is checked against ``limit`` (default
    :func:`memory_limit_bytes`); over it, :class:`~medmoe.data.headers.VolumeTooLarge` is raised.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{source}: expected a 3-D volume, got shape {shape}")
    if min(shape) == 0:
        raise InputError(f"{source}: empty volume, shape {shape} has an axis of size 0")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{source}: the affine is not a finite 4x4 matrix")
    spacing = voxel_spacing(affine)
    if (spacing < MIN_SPACING_MM).any() or (spacing > MAX_SPACING_MM).any():
        raise InputError(
            f"{source}: absurd voxel spacing {np.round(spacing, 6).tolist()} mm "
            f"(allowed {MIN_SPACING_MM}..{MAX_SPACING_MM} mm)"
        )
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{source}: the affine is singular")
    if limit is None:
        check_memory(
            shape, dtype, limit=memory_limit_bytes(), source=source, what="MEDMOE_MAX_VOLUME_BYTES"
        )
    else:
        check_memory(shape, dtype, limit=limit, source=source)
    return shape


def check_values(array: np.ndarray, *, source: str, kind: str) -> None:
    if not np.isfinite(array).all():
        raise InputError(f"{source}: the volume contains NaN or Inf voxels")
    if kind == "image" and array.min() == array.max():
        raise InputError(f"{source}: constant image (every voxel has the same value)")


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
            f"(expected {', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)})"
        )
    return array, affine, str(path)


def load_volume(path: str | os.PathLike, *, max_bytes: int | None = None) -> Volume:
    """Read an image as float32 with its affine; refuse non-3-D, empty, constant or NaN/Inf data.

    ``max_bytes`` caps the memory the volume may need (default :func:`memory_limit_bytes`).
    """
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
