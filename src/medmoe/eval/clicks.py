"""Click simulation for interactive evaluation and training, as pure functions of masks.

``random`` picks uniformly from the error region FN ∪ FP and labels the click by the region it
came from. ``center`` takes the largest connected component of FN and the largest of FP
(6-connectivity, scipy's default), keeps the larger of the two, and clicks its voxel farthest
from the component's boundary (Euclidean distance transform; the volume border counts as
boundary). Ties go to the first voxel in C order, so a given pair of masks always yields the
same ``center`` click.

:func:`largest_error_click` is the CVPR 2025 interactive 3D challenge's rule itself: the error
``pred != gt`` is one region (FN and FP voxels that touch form one component), components are
26-connected, and the click is the deepest voxel of the largest one, labelled by the ground truth
there (1 in the object: under-segmented; 0 outside it: over-segmented). The challenge draws
among tied voxels with a fixed seed; medmoe takes the first in C order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from medmoe.errors import InputError

METHODS = ("random", "center")


class Click(NamedTuple):
    point: np.ndarray  # (3,) int64 voxel index
    label: int  # 1 positive (missed foreground), 0 negative (false positive)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or gt.ndim != 3:
        raise InputError(f"masks must be 3-D and of equal shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def deepest_point(region: np.ndarray) -> np.ndarray:
    """The voxel of ``region`` farthest from its boundary (first in C order on ties).

    The transform runs on the region's bounding box padded by one voxel, which gives the same
    distances as the whole volume padded by one (the nearest background voxel of any region voxel
    lies inside that padded box) at a cost independent of the scan size. C order inside the box
    is C order in the volume, so ties resolve the same way. An empty region gives (0, 0, 0), as
    the argmax of an all-zero transform does."""
    region = np.asarray(region, dtype=bool)
    idx = np.argwhere(region)
    if idx.size == 0:
        return np.zeros(region.ndim, dtype=np.int64)
    lo, hi = idx.min(0), idx.max(0) + 1
    box = region[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    padded = np.pad(box, 1)  # the volume border is boundary too
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1, 1:-1]
    return lo.astype(np.int64) + np.array(np.unravel_index(int(np.argmax(dist)), box.shape))


def largest_component(
    region: np.ndarray, *, structure: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """The largest connected component of ``region`` and its size (the first on ties);
    ``structure`` is scipy's (None: 6-connectivity)."""
    labels, n = ndimage.label(region, structure=structure)
    if n == 0:
        return np.zeros_like(region), 0
    sizes = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    return labels == best, int(sizes[best - 1])


def _uniform_voxel(region: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng()
    flat = np.flatnonzero(region)
    return np.array(np.unravel_index(int(flat[rng.integers(flat.size)]), region.shape), np.int64)


def first_click(gt: np.ndarray, *, method: str = "center", rng=None) -> Click:
    """A positive click from the ground truth (its deepest voxel, or a uniform one)."""
    gt = np.asarray(gt, dtype=bool)
    if gt.ndim != 3:
        raise InputError(f"ground truth must be 3-D, got shape {gt.shape}")
    if not gt.any():
        raise InputError("ground truth is empty: there is nothing to click on")
    if method == "center":
        return Click(deepest_point(largest_component(gt)[0]), 1)
    if method == "random":
        return Click(_uniform_voxel(gt, rng), 1)
    raise InputError(f"unknown click method {method!r}; use {', '.join(METHODS)}")


def next_click(
    pred: np.ndarray, gt: np.ndarray, *, method: str = "random", rng=None
) -> Click | None:
    """A corrective click on the error between ``pred`` and ``gt``; ``None`` when they agree."""
    pred, gt = _check_pair(pred, gt)
    fn, fp = gt & ~pred, pred & ~gt
    if not (fn.any() or fp.any()):
        return None
    if method == "random":
        point = _uniform_voxel(fn | fp, rng)
        return Click(point, int(fn[tuple(point)]))
    if method == "center":
        fn_comp, fn_size = largest_component(fn)
        fp_comp, fp_size = largest_component(fp)
        comp, label = (fn_comp, 1) if fn_size >= fp_size else (fp_comp, 0)
        return Click(deepest_point(comp), label)
    raise InputError(f"unknown click method {method!r}; use {', '.join(METHODS)}")


CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def largest_error_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The CVPR 2025 challenge's click: the deepest voxel (by EDT) of the largest 26-connected
    component of ``pred != gt``, positive where ``gt`` holds the object (a missed voxel) and
    negative where it does not (a false positive); ``None`` when ``pred == gt`` everywhere.

    With an empty ``pred`` this is the deepest voxel of the object's largest component: the
    challenge's first click when no box is given."""
    pred, gt = _check_pair(pred, gt)
    error = pred != gt
    if not error.any():
        return None
    component, _ = largest_component(error, structure=CONNECTIVITY_26)
    point = deepest_point(component)
    return Click(point, int(gt[tuple(point)]))


def box_from_mask(gt: np.ndarray, *, jitter: int = 0, rng=None) -> np.ndarray:
    """The inclusive bounding box ``(x1, y1, z1, x2, y2, z2)`` of ``gt``, each side moved by up to
    ``jitter`` voxels (uniformly, clipped to the volume)."""
    gt = np.asarray(gt, dtype=bool)
    idx = np.argwhere(gt)
    if idx.size == 0:
        raise InputError("ground truth is empty: no bounding box")
    lo, hi = idx.min(0).astype(np.float64), idx.max(0).astype(np.float64)
    if jitter:
        rng = rng if rng is not None else np.random.default_rng()
        lo = lo + rng.integers(-jitter, jitter + 1, size=3)
        hi = hi + rng.integers(-jitter, jitter + 1, size=3)
        top = np.array(gt.shape, dtype=np.float64) - 1
        lo, hi = np.clip(lo, 0, top), np.clip(hi, 0, top)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return np.concatenate([lo, hi])
