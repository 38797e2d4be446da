"""A volume and the checks every reader applies to it, whatever the file format.

:class:`Volume` is an array with its voxel-to-world affine (RAS+, mm); :func:`check_geometry`
validates a header's shape and affine (and the memory the voxels will need) before any voxel is
read, and :func:`check_values` the voxels after. NIfTI/NRRD/MHA (:mod:`medmoe.data.io`) and DICOM
(:mod:`medmoe.data.dicom`) readers share them.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from medmoe.data.headers import check_memory
from medmoe.errors import InputError

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
