"""A crop's binary mask back onto a region of the scan, fast, with the result of
:meth:`Sam3DCrop.invert` (``mode="auto"``: linear interpolation of the 0/1 mask, then >= 0.5).

``Sam3DCrop.invert`` resamples with nibabel, that is ``scipy.ndimage.affine_transform`` with the
3x3 matrix from scan voxels to crop voxels: a general trilinear interpolation at every voxel
(about 0.5 s for the crop's whole footprint on a 1 mm brain MRI on 2 CPU cores). When that
matrix has one non-zero per row and column (the scan's axes are the crop's R, A, S axes in
some order, possibly flipped: how scanners and NIfTI files usually store them), each crop
coordinate depends on one scan index only, and trilinear interpolation is three 1-D linear
interpolations, one axis after the other.

The result is ``invert``'s voxel for voxel: the per-axis coordinates are computed as
``affine_transform`` computes them (one product and one sum in float64: the same numbers), a
coordinate outside ``[0, n - 1]`` makes the voxel 0 as scipy's ``constant`` mode does, and the
voxels whose separable value lies within :data:`TIE` of the 0.5 threshold, or whose coordinate
lies within :data:`EDGE` of the crop's edge, are interpolated again by scipy itself
(``map_coordinates``) at those coordinates, so that rounding in the separable sums cannot
flip a voxel. Any other matrix (an oblique scan) goes to ``invert``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medmoe.data import Sam3DCrop
from medmoe.data.crop import grid_affine

TIE = 1e-4  # float32 separable sums lie within ~1e-6 of scipy's float64 ones
EDGE = 1e-6  # coordinates this close to a crop edge are left to scipy's own test


def _axis_map(crop: Sam3DCrop, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(matrix, shift)`` from region voxels to crop voxels as nibabel builds it, or ``None``
    when a row has more than one non-zero (an oblique scan)."""
    target = crop.source_affine @ grid_affine(lo.astype(np.float64), 1.0)
    vox2vox = np.linalg.inv(crop.affine).dot(target)
    matrix, shift = vox2vox[:3, :3], vox2vox[:3, 3]
    if ((matrix != 0).sum(axis=1) != 1).any() or ((matrix != 0).sum(axis=0) != 1).any():
        return None
    return matrix, shift


def _lerp(array: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """``array`` sampled at ``coords`` along ``axis`` by linear interpolation (float32); 0
    where a coordinate lies outside ``[0, n - 1]``."""
    n = array.shape[axis]
    inside = (coords >= 0) & (coords <= n - 1)
    i0 = np.clip(np.floor(coords), 0, n - 2).astype(np.intp)  # coordinate n - 1: weight 1
    shape = [1] * array.ndim
    shape[axis] = len(coords)
    w = np.where(inside, coords - i0, 0).astype(np.float32).reshape(shape)
    low = np.take(array, i0, axis=axis)
    out = np.take(array, i0 + 1, axis=axis)
    out -= low
    out *= w
    out += low
    if not inside.all():
        index = [slice(None)] * array.ndim
        index[axis] = ~inside
        out[tuple(index)] = 0
    return out


def invert_mask(
    crop: Sam3DCrop, mask: np.ndarray, region: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``crop.invert(mask, region=region)`` for a boolean ``(S, S, S)`` mask: ``bool`` of the
    region's shape, ``source[lo:hi]``."""
    lo, hi = (np.asarray(r, dtype=int) for r in region)
    found = _axis_map(crop, lo)
    if found is None:
        return crop.invert(mask, region=(lo, hi))
    matrix, shift = found
    shape = tuple(int(n) for n in hi - lo)
    n = crop.size
    src_axis = np.argmax(matrix != 0, axis=0)  # the crop axis each region axis reads
    coords = [
        matrix[src_axis[s], s] * np.arange(shape[s], dtype=np.float64) + shift[src_axis[s]]
        for s in range(3)
    ]
    # crop axes in the region's order; the axis that grows least goes first
    soft = np.ascontiguousarray(np.transpose(np.asarray(mask, dtype=np.float32), src_axis))
    for s in np.argsort([len(c) / n for c in coords]):
        soft = _lerp(soft, coords[s], int(s))
    out = soft >= 0.5
    soft -= 0.5
    np.abs(soft, out=soft)
    doubt = soft < TIE
    for s in range(3):
        c = coords[s]
        near = (np.abs(c) < EDGE) | (np.abs(c - (n - 1)) < EDGE)
        if near.any():
            index = [slice(None)] * 3
            index[s] = near
            doubt[tuple(index)] = True
    if doubt.any():
        idx = np.nonzero(doubt)
        points = np.empty((3, len(idx[0])), dtype=np.float64)
        for s in range(3):
            points[src_axis[s]] = coords[s][idx[s]]
        exact = ndimage.map_coordinates(
            np.asarray(mask, dtype=np.float32), points, order=1, mode="constant", cval=0.0
        )
        out[idx] = exact >= 0.5
    return out
