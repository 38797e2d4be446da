"""A cheap start for the gate: cross-entropy on first prompts, no decoder (before the click loop).

The click loop (:class:`medmoe.moe.steps.GateStep`) runs the general decoder and an expert for
every click of every crop, so a CPU budget allows it a few hundred gate steps. The gate's
cross-entropy alone needs only the cached embedding and the prompt encoder, so a warm-up of many
epochs costs about what one click-loop epoch does. ``MoETrainConfig.warmup_epochs`` turns it on
(0, the default, is the paper's schedule: the click loop alone).

``class_weights`` balances the cross-entropy over the gate's classes when the original tasks
outnumber the new ones (``MoETrainConfig.balance_classes``), in the warm-up and the click loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.moe.interactive import first_prompt, point_prompt
from medmoe.moe.model import MoESam3D
from medmoe.train.engine import StepContext


def class_weights(tasks: Sequence[int], num_classes: int) -> Tensor:
    """``n / (k n_c)`` for each class ``c`` with ``n_c`` of the ``n`` crops, ``k`` classes
    present (1 for an absent class): each present class then weighs as much in the mean loss,
    and a crop's mean weight over the data is 1."""
    counts = np.bincount(np.asarray(tasks, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)


def weighted_ce(logits: Tensor, target: Tensor, weights: Tensor | None) -> Tensor:
    """Mean over the batch of ``weights[target] * CE``. (``F.cross_entropy(weight=...)``
    divides by the summed weights of the batch, which cancels them for a batch of one.)"""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    if weights is not None:
        ce = ce * weights.to(ce.device)[target]
    return ce.mean()


class GateWarmupStep:
    """One warm-up step: the gate's weighted cross-entropy on each crop's first prompt (a
    random click inside the label, or its box, as the click loop's first iteration draws it),
    all crops of the batch in one gate call."""

    def __init__(self, *, moe: MoESam3D, box_prob: float, weights: Tensor | None) -> None:
        self.moe = moe
        pe = moe.base.prompt_encoder
        self.box_prob = box_prob if pe.supports_boxes else 0.0
        self.weights = weights

    def __call__(self, batch: list[dict], ctx: StepContext) -> Tensor:
        pe = self.moe.base.prompt_encoder
        tokens = []
        with torch.no_grad():
            for item in batch:
                gt = np.asarray(item["label"], dtype=bool)
                points, labels, box = first_prompt(
                    gt, rng=ctx.rng, box_prob=self.box_prob, device=ctx.device
                )
                tokens.append(pe(point_prompt(points, labels, ctx.device), box, None)[0])
        emb = torch.stack([item["embedding"] for item in batch]).to(ctx.device)
        target = torch.as_tensor([item["task"] for item in batch], device=ctx.device)
        logits = ctx.module(emb, pe.get_dense_pe(), torch.cat(tokens), return_logits=True)
        return weighted_ce(logits, target, self.weights)
