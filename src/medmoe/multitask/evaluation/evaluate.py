"""Evaluation of a fundus model on one split, on the model's device.

Grades: accuracy and quadratic-weighted kappa. Lesions: IoU and Dice pooled over the split
(threshold 0.5) and AUPR (the IDRiD challenge's lesion metric, which does not collapse to 0 for a
small lesion the way a thresholded Dice does). Also the mean number of experts used per task.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from medmoe.multitask.constants import GRADE_TASKS
from medmoe.multitask.data.datasets import FundusData
from medmoe.multitask.data.preprocess import normalize
from medmoe.multitask.evaluation.metrics import (
    accuracy,
    aupr,
    pooled_iou_dice,
    quadratic_weighted_kappa,
)
from medmoe.multitask.model.moe import MultiTaskMoE


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def grade_outputs(
    model: MultiTaskMoE, images: Tensor, *, dense: bool, tasks: tuple[str, ...]
) -> dict[str, tuple[Tensor, Tensor]]:
    """The device side: per task, the predicted grades and the number of experts used per
    image, on the model's device (``images``: a CPU batch in [0, 1])."""
    cfg = model.config
    x = normalize(images.to(_device(model)), mean=cfg.mean, std=cfg.std)
    out = model(x, dense=dense, tasks=tasks)
    return {t: (out[t].output.argmax(-1), out[t].mask.sum(-1)) for t in tasks}


def lesion_outputs(model: MultiTaskMoE, images: Tensor, *, dense: bool) -> tuple[Tensor, Tensor]:
    """The device side: lesion probabilities ``(B, C, H, W)`` and experts used per image."""
    cfg = model.config
    x = normalize(images.to(_device(model)), mean=cfg.mean, std=cfg.std)
    out = model(x, dense=dense, tasks=("seg",))["seg"]
    return out.output.float().sigmoid(), out.mask.sum(-1)


def _grades(
    model: MultiTaskMoE, data: FundusData, batch_size: int, dense: bool
) -> tuple[dict, dict]:
    cfg = model.config
    tasks = tuple(t for t in GRADE_TASKS if t in model.heads)
    preds: dict[str, list] = {t: [] for t in tasks}
    used: dict[str, list] = {t: [] for t in tasks}
    for batch in DataLoader(data.grading, batch_size=batch_size):
        for t, (pred, n) in grade_outputs(model, batch["image"], dense=dense, tasks=tasks).items():
            preds[t].append(pred.cpu().numpy())
            used[t] += n.cpu().tolist()
    res: dict = {}
    for t, classes in (("dr", cfg.dr_classes), ("dme", cfg.dme_classes)):
        if t in tasks:
            pred, true = np.concatenate(preds[t]), getattr(data.grading, t)
            res[f"{t}_acc"] = accuracy(pred, true)
            res[f"{t}_kappa"] = quadratic_weighted_kappa(pred, true, classes)
    return res, {t: float(np.mean(v)) for t, v in used.items()}


def _lesions(
    model: MultiTaskMoE, data: FundusData, batch_size: int, dense: bool
) -> tuple[dict, dict]:
    probs, masks, used = [], [], []
    for batch in DataLoader(data.segmentation, batch_size=batch_size):
        prob, n = lesion_outputs(model, batch["image"], dense=dense)
        probs.append(prob.cpu().numpy())
        masks.append(batch["masks"].numpy())
        used += n.cpu().tolist()
    prob, true = np.concatenate(probs), np.concatenate(masks)
    res = {}
    for c, lesion in enumerate(model.config.lesions):
        iou, dice = pooled_iou_dice(prob[:, c] > 0.5, true[:, c])
        res[f"{lesion}_iou"], res[f"{lesion}_dice"] = iou, dice
        res[f"{lesion}_aupr"] = aupr(prob[:, c], true[:, c])
    return res, {"seg": float(np.mean(used))}


@torch.no_grad()
def evaluate_fundus(
    model: MultiTaskMoE, data: FundusData, *, batch_size: int = 8, dense: bool = False
) -> dict:
    """The metrics of ``model`` (on its own device) on ``data``; see the module docstring."""
    model.eval()
    res: dict = {}
    used: dict[str, float] = {}
    if any(t in model.heads for t in GRADE_TASKS) and len(data.grading):
        metrics, counts = _grades(model, data, batch_size, dense)
        res.update(metrics)
        used.update(counts)
    if "seg" in model.heads and len(data.segmentation):
        metrics, counts = _lesions(model, data, batch_size, dense)
        res.update(metrics)
        used.update(counts)
    res["experts_used"] = used
    return res
