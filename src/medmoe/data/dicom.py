"""Reading a DICOM series (a folder, a zip, or one of its files) as a :class:`Volume`.

pydicom reads the files; the geometry is built here because neither pydicom nor SimpleITK's
series reader refuses what an interactive model must not be given silently: SimpleITK resamples
nothing and warns about non-uniform spacing only on its log, and stacks a tilted gantry as if it
were straight. So a series is stacked only when its slices share one orientation and grid, lie
along the slice normal (no gantry tilt) and are evenly spaced (no missing slice), and each check
that fails is one line naming what was found.

The affine maps voxel (i, j, k) = (column, row, slice in position order) to RAS+ millimetres,
from ImagePositionPatient, ImageOrientationPatient and PixelSpacing (DICOM's patient space is
LPS); each slice's RescaleSlope and RescaleIntercept are applied.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from medmoe.data.volume import Volume, check_geometry, check_values
from medmoe.errors import InputError, first_line

DICOM_SUFFIXES = (".dcm", ".zip")
MAX_FILES = 10_000  # slices in one folder or zip
MAX_MEMBER_BYTES = 64 << 20  # one file of a zip, as declared and as read
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class SeriesInfo(NamedTuple):
    uid: str
    description: str
    modality: str
    files: int


class DicomSeries(NamedTuple):
    """A stacked series: its volume, and its slices' headers (no pixels) in the volume's k order
    (what a DICOM SEG must reference)."""

    volume: Volume
    headers: list
    uid: str


def is_dicom_path(path: str | os.PathLike) -> bool:
    """A folder, a ``.zip`` or a ``.dcm`` file: what :func:`read_series` reads."""
    path = Path(path)
    return path.is_dir() or path.name.lower().endswith(DICOM_SUFFIXES)


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a dependency
        raise InputError("reading DICOM needs pydicom: pip install pydicom") from None
    return pydicom


def _sources(path: Path) -> Iterator[tuple[str, object]]:
    """``(name, source)`` for every candidate file: a path, or a zip member's bytes."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if len(files) > MAX_FILES:
            raise InputError(f"{path}: {len(files)} files, more than {MAX_FILES} in one series")
        for p in files:
            yield str(p.relative_to(path)), p
        return
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable zip ({first_line(err)})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise InputError(f"{path}: {len(members)} files, more than {MAX_FILES} in one zip")
        for m in members:
            if m.file_size > MAX_MEMBER_BYTES:
                raise InputError(f"{path}: member {m.filename!r} is over {MAX_MEMBER_BYTES} bytes")
            with archive.open(m) as fh:  # read() past the declared size would mean a forged header
                data = fh.read(MAX_MEMBER_BYTES + 1)
            if len(data) > MAX_MEMBER_BYTES:
                raise InputError(f"{path}: member {m.filename!r} is over {MAX_MEMBER_BYTES} bytes")
            yield m.filename, data


def _read_header(source, pydicom):
    """The dataset without pixels, or None for a file that is not a DICOM image."""
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - DICOMDIR, READMEs, anything that is not DICOM
        return None
    if "SeriesInstanceUID" not in ds or "Rows" not in ds:
        return None
    return ds


def scan_series(path: str | os.PathLike) -> dict[str, list[tuple[object, object]]]:
    """``{SeriesInstanceUID: [(source, header), ...]}`` of every image file under ``path``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    pydicom = _pydicom()
    found: dict[str, list] = {}
    for _, source in _sources(path):
        ds = _read_header(source, pydicom)
        if ds is not None:
            found.setdefault(str(ds.SeriesInstanceUID), []).append((source, ds))
    if not found:
        raise InputError(f"{path}: no DICOM image files found")
    return found


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """The series under ``path``: uid, description, modality and file count."""
    out = []
    for uid, items in sorted(scan_series(path).items()):
        ds = items[0][1]
        desc = str(getattr(ds, "SeriesDescription", "") or "")
        out.append(SeriesInfo(uid, desc, str(getattr(ds, "Modality", "") or ""), len(items)))
    return out


def _choose(found: dict, series: str | None, source: str) -> tuple[str, list]:
    if series is not None:
        if series not in found:
            raise InputError(f"{source}: no series {series}; it holds {', '.join(sorted(found))}")
        return series, found[series]
    if len(found) == 1:
        return next(iter(found.items()))
    listed = "; ".join(
        f"{uid} ({getattr(items[0][1], 'SeriesDescription', '') or 'no description'}, "
        f"{len(items)} files)"
        for uid, items in sorted(found.items())
    )
    raise InputError(f"{source}: {len(found)} series, choose one with --series UID: {listed}")


def _floats(ds, keyword: str, n: int, source: str) -> np.ndarray:
    value = getattr(ds, keyword, None)
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        out = np.zeros(0)
    if out.shape != (n,) or not np.isfinite(out).all():
        raise InputError(f"{source}: a slice has no valid {keyword}")
    return out


def slice_geometry(
    positions: np.ndarray,
    orientations: np.ndarray,
    spacings: np.ndarray,
    *,
    source: str,
    tol: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """The order that stacks the slices, and the LPS affine of the stacked volume.

    ``positions`` (n, 3) are ImagePositionPatient, ``orientations`` (n, 6) ImageOrientationPatient
    and ``spacings`` (n, 2) PixelSpacing (row spacing, column spacing). Refused: one slice, mixed
    orientations or pixel spacings, two slices at one position, slices that step off the normal
    (gantry tilt), and gaps that differ by more than ``tol`` (relative) from the median gap:
    "missing slices" when a gap is a whole multiple of it, "non-uniform spacing" otherwise.
    """
    n = len(positions)
    if n < 2:
        raise InputError(f"{source}: one slice is a 2-D image, not a 3-D volume")
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        raise InputError(f"{source}: the slices have different orientations")
    if np.abs(spacings - spacings[0]).max() > 1e-4 * max(spacings[0].max(), 1.0):
        raise InputError(f"{source}: the slices have different pixel spacings")
    row, col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, col)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"{source}: ImageOrientationPatient is not two orthonormal directions")
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    gaps = np.diff(along)
    if gaps.min() < 1e-3:
        raise InputError(
            f"{source}: two slices at the same position ({along[int(np.argmin(gaps))]:.3f} mm): "
            "several acquisitions in one series?"
        )
    step = float(np.median(gaps))
    off = positions - positions[0] - np.outer(along - along[0], normal)
    drift = float(np.linalg.norm(off, axis=1).max())
    if drift > max(tol * step, 1e-3):
        tilt = np.degrees(np.arctan2(drift, along[-1] - along[0]))
        raise InputError(
            f"{source}: the slices step off their normal by up to {drift:.2f} mm "
            f"(gantry tilt of {tilt:.1f} degrees); resample the series first"
        )
    bad = np.abs(gaps - step) > tol * step
    if bad.any():
        ratio = gaps / step
        whole = np.abs(ratio - np.rint(ratio)) <= tol
        if (whole | ~bad).all():
            missing = int((np.rint(ratio[bad]) - 1).sum())
            first = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{source}: {missing} slice(s) missing (a gap of {gaps[first]:.2f} mm after "
                f"slice {first + 1} of {n}, where slices are {step:.2f} mm apart)"
            )
        raise InputError(
            f"{source}: non-uniform slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)"
        )
    affine = np.eye(4)
    affine[:3, 0] = row * spacings[0, 1]  # i runs along a row: one column spacing per step
    affine[:3, 1] = col * spacings[0, 0]
    affine[:3, 2] = normal * step
    affine[:3, 3] = positions[0]
    return order, affine


def _pixels(source, pydicom, shown: str) -> np.ndarray:
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        ds = pydicom.dcmread(fp)
        pixels = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - a codec missing, truncated data, ...
        raise InputError(f"{shown}: cannot read a slice's pixels ({first_line(err)})") from None
    if pixels.ndim != 2:
        raise InputError(f"{shown}: a slice is not one grey-level frame (shape {pixels.shape})")
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def read_series(
    path: str | os.PathLike, *, series: str | None = None, max_bytes: int | None = None
) -> DicomSeries:
    """One series under ``path`` stacked into a float32 volume (see the module's docstring).

    ``path`` is a folder or zip (``series`` picks one of several; without it, several are refused
    with their list) or one ``.dcm`` file, which stands for its series in the same folder.
    ``max_bytes`` caps the volume's memory, checked before any pixel is read.
    """
    path = Path(path)
    shown = str(path)
    if path.is_file() and path.name.lower().endswith(".dcm"):
        one = _read_header(path, _pydicom())
        if one is None:
            raise InputError(f"{path}: not a DICOM image file")
        series = series or str(one.SeriesInstanceUID)
        path = path.parent
    uid, items = _choose(scan_series(path), series, shown)
    headers = [ds for _, ds in items]
    if any(int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 for ds in headers):
        raise InputError(f"{shown}: multi-frame (enhanced) DICOM is not supported")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in headers}) > 1:
        raise InputError(f"{shown}: the slices have different sizes")
    order, lps = slice_geometry(
        np.stack([_floats(ds, "ImagePositionPatient", 3, shown) for ds in headers]),
        np.stack([_floats(ds, "ImageOrientationPatient", 6, shown) for ds in headers]),
        np.stack([_floats(ds, "PixelSpacing", 2, shown) for ds in headers]),
        source=shown,
    )
    affine = _LPS_TO_RAS @ lps
    shape = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    check_geometry(shape, affine, source=shown, limit=max_bytes)
    pydicom = _pydicom()
    array = np.empty(shape, dtype=np.float32)
    for k, index in enumerate(order):
        array[:, :, k] = _pixels(items[index][0], pydicom, shown).T
    check_values(array, source=shown, kind="image")
    return DicomSeries(Volume(array, affine), [headers[i] for i in order], uid)
