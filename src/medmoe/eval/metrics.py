"""Dice, NSD and HD95 through MONAI's metric functions, on the original voxel grid.

Empty masks (MONAI returns NaN/Inf or warns for these, so medmoe decides them here):
- both prediction and ground truth empty: Dice 1, NSD 1, HD95 0 (a perfect answer);
- exactly one of them empty: Dice 0, NSD 0, HD95 ``inf``; summaries report HD95 medians and
  count infinite values separately rather than averaging them.
Distances use the voxel spacing in mm. The computation is restricted to the bounding box of
``pred | gt`` plus a margin, which leaves every surface distance unchanged and keeps the cost
independent of the scan size.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from medmoe.errors import InputError


def _prepare(pred, gt) -> tuple[torch.Tensor, torch.Tensor] | None:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    union = pred | gt
    if not union.any():
        return None
    idx = np.argwhere(union)
    lo = np.maximum(idx.min(0) - 2, 0)
    hi = np.minimum(idx.max(0) + 3, np.array(pred.shape))
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    as_tensor = lambda m: torch.from_numpy(np.ascontiguousarray(m[sl]))[None, None].float()  # noqa: E731
    return as_tensor(pred), as_tensor(gt)


def dice(pred, gt) -> float:
    pair = _prepare(pred, gt)
    if pair is None:
        return 1.0
    return float(compute_dice(pair[0], pair[1], include_background=True, ignore_empty=False))


def _one_empty(pred, gt) -> bool:
    return bool(np.any(pred)) != bool(np.any(gt))


def nsd(pred, gt, *, spacing, tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice at ``tolerance_mm``."""
    pair = _prepare(pred, gt)
    if pair is None:
        return 1.0
    if _one_empty(pred, gt):
        return 0.0
    value = compute_surface_dice(
        pair[0],
        pair[1],
        class_thresholds=[float(tolerance_mm)],
        include_background=True,
        spacing=[float(s) for s in spacing],
    )
    return float(value)


def hd95(pred, gt, *, spacing) -> float:
    """95th-percentile symmetric Hausdorff distance in mm."""
    pair = _prepare(pred, gt)
    if pair is None:
        return 0.0
    if _one_empty(pred, gt):
        return float("inf")
    value = compute_hausdorff_distance(
        pair[0],
        pair[1],
        include_background=True,
        percentile=95,
        spacing=[float(s) for s in spacing],
    )
    return float(value)
