"""Full-volume inference for objects larger than one 128^3 crop (SAM-Med3D paper, §4.3).

The scan is resampled once onto a canonical RAS grid of 1.5 mm voxels, aligned with the first
crop. Starting from the crop around the user's prompt, a new overlapping window (shifted by half
a window) is added wherever the current prediction touches an *open* border of a window, one
that does not coincide with the edge of the scan. Each new window is prompted with a positive
click at the deepest voxel of the prediction already made inside it, and every window is
normalised exactly as a single crop is. Logits are averaged where windows overlap. The search
stops when no prediction touches an open border, or after ``max_windows`` windows.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from medmoe.data.crop import (
    DEFAULT_SIZE,
    DEFAULT_SPACING,
    LOGIT_FILL,
    grid_affine,
    resample,
    zscore_foreground,
)
from medmoe.data.prompts import voxel_to_world, world_to_voxel
from medmoe.data.volume import Volume
from medmoe.errors import InputError
from medmoe.eval.clicks import deepest_point


class FullVolumeResult(NamedTuple):
    mask: np.ndarray  # bool, the source volume's shape
    windows: list[tuple[int, int, int]]  # window origins, in voxels of the global grid
    hit_limit: bool  # True when max_windows stopped the search with borders still open


def _global_grid(vol: Volume, origin: np.ndarray, spacing: float) -> tuple[np.ndarray, tuple]:
    """Origin and shape of a grid aligned with ``origin`` that covers the whole scan."""
    shape = np.array(vol.array.shape) - 1
    corners = np.array(
        [[a, b, c] for a in (0, shape[0]) for b in (0, shape[1]) for c in (0, shape[2])]
    )
    world = voxel_to_world(corners, vol.affine)
    lo, hi = world.min(0), world.max(0)
    start = origin - spacing * np.ceil((origin - lo) / spacing)
    size = np.floor((hi - start) / spacing).astype(int) + 1
    return start, tuple(int(s) for s in size)


def _block(array: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """``array[at : at + size]`` per axis, zero-padded where it leaves the array."""
    out = np.zeros((size,) * 3, dtype=array.dtype)
    src = tuple(slice(max(a, 0), min(a + size, n)) for a, n in zip(at, array.shape, strict=True))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, at, strict=True))
    if all(s.stop > s.start for s in src):
        out[dst] = array[src]
    return out


def _prompts_in_window(pts, box_ijk, affine, g_affine, at, size):
    """The user's points and box (voxels of the scan) in the coordinates of the window at ``at``."""
    w_pts = world_to_voxel(voxel_to_world(pts, affine), g_affine) - at if len(pts) else None
    w_box = None
    if box_ijk is not None:
        corners = voxel_to_world(np.reshape(box_ijk, (2, 3)), affine)
        ends = world_to_voxel(corners, g_affine) - at
        w_box = np.concatenate([ends.min(0), ends.max(0)]).clip(0, size - 1)
    return w_pts, w_box


def _windows_to_open(fg: np.ndarray, at: np.ndarray, g_shape, size: int) -> list[tuple]:
    """Half-shifted neighbours of the window at ``at`` whose shared border the prediction
    ``fg`` touches, where that border is open (not the edge of the grid)."""
    half, out = size // 2, []
    for axis in range(3):
        for side, step in ((0, -half), (size - 1, half)):
            open_border = at[axis] > 0 if side == 0 else at[axis] + size < g_shape[axis]
            if open_border and np.take(fg, side, axis=axis).any():
                nxt = at.copy()
                nxt[axis] += step
                out.append(tuple(int(v) for v in nxt))
    return out


def segment_full_volume(
    predictor,
    vol: Volume,
    *,
    points_ijk: np.ndarray,
    labels: np.ndarray,
    box_ijk: np.ndarray | None = None,
    max_windows: int = 32,
    size: int = DEFAULT_SIZE,
    spacing: float = DEFAULT_SPACING,
) -> FullVolumeResult:
    """Segment one object across as many windows as it needs (see the module docstring).

    ``points_ijk`` and ``box_ijk`` are voxel indices of ``vol``; the first window is centred on
    the box centre, or on the first point.
    """
    if max_windows < 1:
        raise InputError(f"max_windows must be >= 1, got {max_windows}")
    pts = np.asarray(points_ijk, dtype=np.float64).reshape(-1, 3)
    if box_ijk is not None:
        box = np.asarray(box_ijk, dtype=np.float64)
        center = (box[:3] + box[3:]) / 2
    elif len(pts):
        center = pts[0]
    else:
        raise InputError("full-volume mode needs a point or a box")
    half = size // 2
    first_origin = voxel_to_world(center, vol.affine)[0] - spacing * half
    g_origin, g_shape = _global_grid(vol, first_origin, spacing)
    g_affine = grid_affine(g_origin, spacing)
    raw = resample(vol.array, vol.affine, g_shape, g_affine, order=1)
    total = np.zeros(g_shape, np.float32)
    count = np.zeros(g_shape, np.uint8)
    start = tuple(int(v) for v in np.rint((first_origin - g_origin) / spacing))
    queue, seen, done = deque([start]), {start}, []
    hit_limit = False
    while queue:
        if len(done) >= max_windows:
            hit_limit = True
            break
        at = np.array(queue.popleft())
        predictor.set_image(zscore_foreground(_block(raw, at, size)))
        if not done:  # the user's prompts, mapped into this window
            w_pts, w_box = _prompts_in_window(pts, box_ijk, vol.affine, g_affine, at, size)
            pred = predictor.predict(
                points=w_pts, labels=labels if w_pts is not None else None, box=w_box
            )
        else:  # a click at the deepest voxel of what is already segmented inside this window
            known = _block(count, at, size) > 0
            current = known & (_block(total, at, size) > 0)
            point = deepest_point(current)[None].astype(np.float64)
            pred = predictor.predict(points=point, labels=np.array([1]))
        logits = pred.logits[0, 0].detach().float().cpu().numpy()
        src = tuple(slice(max(a, 0), min(a + size, n)) for a, n in zip(at, g_shape, strict=True))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, at, strict=True))
        total[src] += logits[dst]
        count[src] += 1
        done.append(tuple(int(a) for a in at))
        for key in _windows_to_open(logits > 0, at, g_shape, size):
            if key not in seen:
                seen.add(key)
                queue.append(key)
    mean = np.where(count > 0, total / np.maximum(count, 1), LOGIT_FILL).astype(np.float32)
    back = resample(mean, g_affine, vol.array.shape, vol.affine, order=1, cval=LOGIT_FILL)
    return FullVolumeResult(mask=back > 0, windows=done, hit_limit=hit_limit)
