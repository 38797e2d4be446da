"""Evaluation of a fundus model on one split, on the model's device, comparable with IDRiD's.

Grades: accuracy, quadratic-weighted kappa, the confusion matrix (rows: true grade, columns:
predicted) and the joint DR + DME accuracy (both right on one photograph: IDRiD sub-challenge
2's metric). Lesions, at each photograph's native resolution (the probabilities upsampled to the
source size through the photograph's frame, :meth:`~medmoe.multitask.data.fov.FovFrame.to_source`,
and scored against the original masks, never the max-pooled training targets; see
:mod:`~medmoe.multitask.evaluation.lesion_scores`): AUPR (IDRiD sub-challenge 1's metric), IoU
and Dice pooled over the split at 0.5 and at the thresholds given (chosen on validation, never
on test), the Dice of each photograph, and the pooled-Dice-maximising threshold of this split
(to pass on: the validation split's is what the test split is scored with). Routing: per task,
the mean number of experts kept and each expert's share of the photographs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from medmoe.multitask.constants import GRADE_TASKS
from medmoe.multitask.data.datasets import FundusData
from medmoe.multitask.data.preprocess import normalize
from medmoe.multitask.evaluation import lesion_scores as ls
from medmoe.multitask.evaluation.metrics import (
    accuracy,
    confusion_matrix,
    joint_accuracy,
    quadratic_weighted_kappa,
)
from medmoe.multitask.model.moe import MultiTaskMoE

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class FundusEvaluation:
    metrics: dict[str, float]  # the scalar metrics, e.g. dr_acc, joint_acc, MA_aupr, MA_dice
    experts_used: dict[str, float]  # per task: mean experts kept per photograph
    expert_share: dict[str, list[float]]  # per task: share of photographs that kept expert e
    confusion: dict[str, list[list[int]]]  # per grade task: rows true, columns predicted
    thresholds: dict[str, float]  # per lesion: the threshold applied (given, else 0.5)
    best_thresholds: dict[str, float]  # per lesion: this split's pooled-Dice-maximising one
    per_image_dice: dict[str, list[float]]  # per lesion, per photograph (nan: no such lesion)

    def to_dict(self) -> dict:
        return asdict(self)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def grade_outputs(
    model: MultiTaskMoE, images: Tensor, *, dense: bool, tasks: tuple[str, ...]
) -> dict[str, tuple[Tensor, Tensor]]:
    """The device side: per task, the predicted grades ``(B,)`` and the experts kept ``(B, E)``,
    on the model's device (``images``: a CPU batch in [0, 1])."""
    cfg = model.config
    x = normalize(images.to(_device(model)), mean=cfg.mean, std=cfg.std)
    out = model(x, dense=dense, tasks=tasks)
    return {t: (out[t].output.argmax(-1), out[t].mask) for t in tasks}


def lesion_outputs(model: MultiTaskMoE, images: Tensor, *, dense: bool) -> tuple[Tensor, Tensor]:
    """The device side: lesion probabilities ``(B, C, H, W)`` and the experts kept ``(B, E)``."""
    cfg = model.config
    x = normalize(images.to(_device(model)), mean=cfg.mean, std=cfg.std)
    out = model(x, dense=dense, tasks=("seg",))["seg"]
    return out.output.float().sigmoid(), out.mask


def _routing(masks: list[Tensor]) -> tuple[float, list[float]]:
    m = torch.cat([x.cpu() for x in masks]).double()
    return float(m.sum(-1).mean()), [round(float(s), 4) for s in m.mean(0)]


def _grades(model: MultiTaskMoE, data: FundusData, batch_size: int, dense: bool) -> dict:
    cfg = model.config
    tasks = tuple(t for t in GRADE_TASKS if t in model.heads)
    preds: dict[str, list] = {t: [] for t in tasks}
    kept: dict[str, list] = {t: [] for t in tasks}
    for batch in DataLoader(data.grading, batch_size=batch_size):
        for t, (pred, mask) in grade_outputs(
            model, batch["image"], dense=dense, tasks=tasks
        ).items():
            preds[t].append(pred.cpu().numpy())
            kept[t].append(mask)
    res: dict = {"metrics": {}, "confusion": {}, "experts_used": {}, "expert_share": {}}
    for t, classes in (("dr", cfg.dr_classes), ("dme", cfg.dme_classes)):
        if t not in tasks:
            continue
        pred, true = np.concatenate(preds[t]), getattr(data.grading, t)
        res["metrics"][f"{t}_acc"] = accuracy(pred, true)
        res["metrics"][f"{t}_kappa"] = quadratic_weighted_kappa(pred, true, classes)
        res["confusion"][t] = confusion_matrix(pred, true, classes).tolist()
        res["experts_used"][t], res["expert_share"][t] = _routing(kept[t])
    if all(t in tasks for t in GRADE_TASKS):
        dr, dme = (np.concatenate(preds[t]) for t in GRADE_TASKS)
        g = data.grading
        res["metrics"]["joint_acc"] = joint_accuracy(dr, g.dr, dme, g.dme)
    return res


def _lesions(
    model: MultiTaskMoE,
    data: FundusData,
    batch_size: int,
    dense: bool,
    thresholds: Mapping[str, float],
) -> dict:
    lesions = model.config.lesions
    pos = neg = None
    per_image: dict[str, list[float]] = {x: [] for x in lesions}
    kept, index, device = [], 0, _device(model)
    for batch in DataLoader(data.segmentation, batch_size=batch_size):
        prob, mask = lesion_outputs(model, batch["image"], dense=dense)
        kept.append(mask)
        for p in prob:
            native = torch.from_numpy(data.segmentation.native_masks(index)).to(device)
            hp, hn = ls.histogram(data.segmentation.frame(index).to_source(p), native)
            index += 1
            hp, hn = hp.cpu().numpy(), hn.cpu().numpy()
            pos, neg = (hp, hn) if pos is None else (pos + hp, neg + hn)
            for c, x in enumerate(lesions):
                per_image[x].append(ls.image_dice(hp[c], hn[c], thresholds[x]))
    metrics: dict[str, float] = {}
    for c, x in enumerate(lesions):
        metrics[f"{x}_iou"], metrics[f"{x}_dice"] = ls.iou_dice_at(pos[c], neg[c], 0.5)
        metrics[f"{x}_aupr"] = ls.average_precision(pos[c], neg[c])
        if thresholds[x] != DEFAULT_THRESHOLD:
            metrics[f"{x}_dice_tuned"] = ls.iou_dice_at(pos[c], neg[c], thresholds[x])[1]
        scored = [d for d in per_image[x] if d == d]
        metrics[f"{x}_dice_per_image"] = float(np.mean(scored)) if scored else float("nan")
    used, share = _routing(kept)
    return {
        "metrics": metrics,
        "experts_used": {"seg": used},
        "expert_share": {"seg": share},
        "best_thresholds": {x: ls.best_threshold(pos[c], neg[c]) for c, x in enumerate(lesions)},
        "per_image_dice": per_image,
    }


@torch.no_grad()
def evaluate_split(
    model: MultiTaskMoE,
    data: FundusData,
    *,
    batch_size: int = 8,
    dense: bool = False,
    thresholds: Mapping[str, float] | None = None,
) -> FundusEvaluation:
    """Everything of the module docstring for ``model`` (on its own device) on ``data``.
    ``thresholds``: per lesion, from the validation split (``best_thresholds`` of its
    evaluation); lesions not named keep 0.5."""
    model.eval()
    applied = {x: float((thresholds or {}).get(x, DEFAULT_THRESHOLD)) for x in model.config.lesions}
    parts = []
    if any(t in model.heads for t in GRADE_TASKS) and len(data.grading):
        parts.append(_grades(model, data, batch_size, dense))
    if "seg" in model.heads and len(data.segmentation):
        parts.append(_lesions(model, data, batch_size, dense, applied))
    merged: dict = {k: {} for k in ("metrics", "experts_used", "expert_share", "confusion")}
    merged.update(best_thresholds={}, per_image_dice={})
    for part in parts:
        for k, v in part.items():
            merged[k].update(v)
    seg = "seg" in model.heads and len(data.segmentation) > 0
    return FundusEvaluation(thresholds=applied if seg else {}, **merged)


def evaluate_fundus(
    model: MultiTaskMoE,
    data: FundusData,
    *,
    batch_size: int = 8,
    dense: bool = False,
    thresholds: Mapping[str, float] | None = None,
) -> dict:
    """The scalar metrics of :func:`evaluate_split`, with ``experts_used`` (per task)."""
    ev = evaluate_split(model, data, batch_size=batch_size, dense=dense, thresholds=thresholds)
    return {**ev.metrics, "experts_used": ev.experts_used}
