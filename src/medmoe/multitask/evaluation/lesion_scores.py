"""Lesion scores at the photograph's native resolution, from per-threshold pixel counts.

The IDRiD challenge scores a lesion's AUPR against the original masks (4288 x 2848 pixels), not
against masks shrunk to the model's input. medmoe upsamples each probability map to the source
size (bilinear, :func:`to_native`) and counts, per lesion and per score bin (``BINS`` equal bins
of [0, 1]), the positive and the negative pixels (:func:`histogram`, one ``bincount`` on the
device). Every split-level score follows from those counts, for every threshold ``k / BINS`` at
once: AUPR (:func:`average_precision`; exact for scores quantised to the bins, ties within a bin
being one threshold) and pooled Dice (:func:`dice_curve`), whose maximum on the validation split
gives the threshold applied to test (:func:`best_threshold`). Memory does not grow with the
number or size of the photographs, which a list of every pixel's score (27 test photographs x 5
lesions x 12 M pixels) could not do; torchmetrics' binned curves compare every pixel with every
threshold, this is one pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

BINS = 10_000


def to_native(probs: Tensor, size: tuple[int, int]) -> Tensor:
    """``(C, h, w)`` probabilities -> ``(C, H, W)`` at ``size`` (bilinear; unchanged if equal)."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def histogram(probs: Tensor, masks: Tensor, *, bins: int = BINS) -> tuple[Tensor, Tensor]:
    """Per channel, positive and negative pixels per score bin: two ``(C, bins)`` int64.

    ``probs`` ``(C, H, W)`` in [0, 1]; ``masks`` ``(C, H, W)`` bool, on the same device. A pixel
    with score ``s`` falls in bin ``min(floor(s * bins), bins - 1)``, so "``s >= k / bins``" is
    "bin ``>= k``"."""
    if probs.shape != masks.shape:
        raise ValueError(f"probabilities {tuple(probs.shape)} vs masks {tuple(masks.shape)}")
    c = probs.shape[0]
    b = (probs.float().reshape(c, -1) * bins).long().clamp_(0, bins - 1)
    b = b + torch.arange(c, device=b.device)[:, None] * bins
    m = masks.reshape(c, -1)
    pos = torch.bincount(b[m], minlength=c * bins).reshape(c, bins)
    neg = torch.bincount(b[~m], minlength=c * bins).reshape(c, bins)
    return pos, neg


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """``out[k]`` = pixels in bins ``>= k`` (predicted positive at threshold ``k / bins``)."""
    return np.cumsum(np.asarray(counts, np.float64)[::-1])[::-1]


def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUPR as average precision: ``sum_k (R_k - R_{k+1}) P_k`` over the bins, high to low;
    nan without positive pixels."""
    tp, fp = _at_or_above(pos), _at_or_above(neg)
    if tp[0] == 0:
        return float("nan")
    used = (np.asarray(pos) + np.asarray(neg)) > 0  # one point per occupied bin
    recall_gain = np.asarray(pos, np.float64)[used] / tp[0]
    precision = tp[used] / (tp[used] + fp[used])
    return float(np.sum(recall_gain * precision))


def dice_curve(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Pooled Dice ``2TP / (2TP + FP + FN)`` at every threshold ``k / bins`` (1 if all empty)."""
    tp, fp = _at_or_above(pos), _at_or_above(neg)
    fn = tp[0] - tp
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The threshold in ``(0, 1)`` with the highest pooled Dice (the lowest such, on ties)."""
    curve = dice_curve(pos, neg)
    bins = curve.size
    return (1 + int(np.argmax(curve[1:]))) / bins


def counts_at(pos: np.ndarray, neg: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """``(TP, FP, FN)`` at ``threshold`` (rounded to a bin edge)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    k = int(round(threshold * pos.size))
    tp, fp = pos[k:].sum(), neg[k:].sum()
    return tp, fp, pos.sum() - tp


def iou_dice_at(pos: np.ndarray, neg: np.ndarray, threshold: float) -> tuple[float, float]:
    """Pooled IoU and Dice at ``threshold``; (1, 1) when prediction and truth are both empty."""
    tp, fp, fn = counts_at(pos, neg, threshold)
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(tp / (tp + fp + fn)), float(2 * tp / (2 * tp + fp + fn))


def image_dice(pos: np.ndarray, neg: np.ndarray, threshold: float) -> float:
    """One image's Dice at ``threshold``; nan when the image has no such lesion (as MONAI's
    ``compute_dice(..., ignore_empty=True)``), so that a mean over images skips it."""
    tp, fp, fn = counts_at(pos, neg, threshold)
    if tp + fn == 0:
        return float("nan")
    return float(2 * tp / (2 * tp + fp + fn))
