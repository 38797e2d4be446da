"""Prompts in patient space: voxel indices or world millimetres, checked against the image."""

from __future__ import annotations

import numpy as np

from medmoe.errors import InputError


def voxel_to_world(points_ijk, affine) -> np.ndarray:
    """``(N, 3)`` voxel indices -> ``(N, 3)`` world (RAS mm) coordinates."""
    pts = np.asarray(points_ijk, dtype=np.float64).reshape(-1, 3)
    affine = np.asarray(affine, dtype=np.float64)
    return pts @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(points_mm, affine) -> np.ndarray:
    """``(N, 3)`` world (RAS mm) coordinates -> ``(N, 3)`` continuous voxel indices."""
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return pts @ inv[:3, :3].T + inv[:3, 3]


def _numbers(value, what: str) -> np.ndarray:
    """``value`` as a float64 array; strings, ragged lists or huge integers are an
    :class:`InputError`, not numpy's ValueError/TypeError/OverflowError."""
    if isinstance(value, str | bytes):
        raise InputError(f"{what} must be numbers")
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise InputError(f"{what} must be a list of numbers of a regular shape") from None


def check_points(points, shape) -> np.ndarray:
    """``(N, 3)`` finite points inside an image of ``shape`` (half a voxel of slack), or an error."""
    pts = _numbers(points, "points")
    if pts.ndim == 1 and pts.size == 3:
        pts = pts.reshape(1, 3)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise InputError(f"points must have shape (N, 3) with N >= 1, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise InputError("points contain NaN or Inf")
    hi = np.asarray(shape, dtype=np.float64) - 0.5
    outside = ((pts < -0.5) | (pts > hi)).any(axis=1)
    if outside.any():
        bad = pts[outside][0]
        raise InputError(
            f"point {np.round(bad, 2).tolist()} lies outside the image (shape {tuple(shape)})"
        )
    return pts


def check_box(box, shape) -> np.ndarray:
    """A ``(6,)`` box ``(i1, j1, k1, i2, j2, k2)`` with ``lo <= hi``, inside the image."""
    b = _numbers(box, "box").reshape(-1)
    if b.shape != (6,):
        raise InputError(f"a box has 6 numbers (x1,y1,z1,x2,y2,z2), got {b.size}")
    if not np.isfinite(b).all():
        raise InputError("box contains NaN or Inf")
    if (b[:3] > b[3:]).any():
        raise InputError(f"inverted box {b.tolist()}: need x1<=x2, y1<=y2, z1<=z2")
    check_points(b.reshape(2, 3), shape)
    return b


def parse_point(text: str) -> tuple[np.ndarray, int]:
    """``"X,Y,Z"`` or ``"X,Y,Z,LABEL"`` (label 1 positive, 0 negative; default 1)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 4):
        raise InputError(f"--point {text!r}: expected X,Y,Z or X,Y,Z,LABEL")
    try:
        xyz = np.array([float(p) for p in parts[:3]])
        label = int(parts[3]) if len(parts) == 4 else 1
    except ValueError:
        raise InputError(f"--point {text!r}: not numbers") from None
    if label not in (0, 1):
        raise InputError(f"--point {text!r}: label must be 1 (positive) or 0 (negative)")
    return xyz, label


def parse_box(text: str) -> np.ndarray:
    parts = text.split(",")
    if len(parts) != 6:
        raise InputError(f"--box {text!r}: expected x1,y1,z1,x2,y2,z2")
    try:
        return np.array([float(p) for p in parts])
    except ValueError:
        raise InputError(f"--box {text!r}: not numbers") from None
