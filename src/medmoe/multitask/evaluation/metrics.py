"""Fundus metrics: accuracy, the confusion matrix and quadratic-weighted kappa for grades; IoU,
Dice (pooled over the split, foreground only) and AUPR for lesion pixels held in memory.

Kappa and AUPR are written out here (a few lines each) rather than pulling in scikit-learn. The
evaluation of a split scores lesions at native resolution from pixel counts instead
(:mod:`~medmoe.multitask.evaluation.lesion_scores`); the functions here are its references.
"""

from __future__ import annotations

import numpy as np


def accuracy(pred, true) -> float:
    pred, true = np.asarray(pred), np.asarray(true)
    return float((pred == true).mean()) if true.size else float("nan")


def confusion_matrix(pred, true, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    pred, true = np.asarray(pred, int), np.asarray(true, int)
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (true, pred), 1)
    return out


def joint_accuracy(pred_a, true_a, pred_b, true_b) -> float:
    """The fraction of samples with both predictions right (IDRiD sub-challenge 2: DR and DME)."""
    right = (np.asarray(pred_a) == np.asarray(true_a)) & (np.asarray(pred_b) == np.asarray(true_b))
    return float(right.mean()) if right.size else float("nan")


def quadratic_weighted_kappa(pred, true, num_classes: int) -> float:
    """Cohen's kappa with weights ``(i - j)^2 / (K - 1)^2``: ``1 - sum(W*O) / sum(W*E)``."""
    observed = confusion_matrix(pred, true, num_classes).astype(float)
    i, j = np.indices(observed.shape)
    weights = (i - j) ** 2 / (num_classes - 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(observed.sum(), 1)
    denom = (weights * expected).sum()
    return 1.0 if denom == 0 else float(1 - (weights * observed).sum() / denom)


def pooled_iou_dice(pred, true) -> tuple[float, float]:
    """IoU and Dice of the foreground, with TP/FP/FN summed over the whole split."""
    pred, true = np.asarray(pred, bool), np.asarray(true, bool)
    tp = np.logical_and(pred, true).sum()
    fp = np.logical_and(pred, ~true).sum()
    fn = np.logical_and(~pred, true).sum()
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(tp / (tp + fp + fn)), float(2 * tp / (2 * tp + fp + fn))


def aupr(scores, true) -> float:
    """Area under the precision-recall curve (average precision: sum of precision x recall step)."""
    scores, true = np.asarray(scores, float).ravel(), np.asarray(true, bool).ravel()
    if not true.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], true[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # one point per distinct threshold
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / t.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
