"""Balancing the shared backbone's gradients between classification and segmentation steps.

Training alternates a classification step and a segmentation step on one AdamW optimiser. At
initialisation the classification losses put ~20x more gradient on the backbone than the
segmentation loss (measured on the demo's model: 31.7 vs 1.6); AdamW's second-moment estimate
for the shared weights is then set by the classification gradients, and segmentation steps
barely move the backbone. The report does not say how it weighs the tasks, so medmoe rescales
the backbone gradient of each step kind to the mean of the kinds' running gradient norms
(an exponential average per kind). Heads and gates keep their own gradients, and a model with a
single kind of task is left alone. Written here because MONAI and torch have no such utility;
the idea is the magnitude part of GradNorm (Chen et al., 2018), without its learned weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def balance_scale(ema: dict[str, float], kind: str) -> float:
    """The factor for ``kind``'s gradient: the mean of the running norms over its own."""
    if ema.get(kind, 0.0) <= 0.0:
        return 1.0
    return (sum(ema.values()) / len(ema)) / ema[kind]


class GradBalancer:
    def __init__(
        self, *, params: Iterable[nn.Parameter], kinds: tuple[str, ...], decay: float = 0.9
    ):
        self.params = list(params)
        self.kinds = kinds
        self.decay = decay
        self.ema: dict[str, float] = {}

    @property
    def active(self) -> bool:
        return len(self.kinds) > 1

    @torch.no_grad()
    def __call__(self, kind: str) -> float:
        """Rescale the gradients of ``params`` after ``kind``'s backward; return the factor."""
        if not self.active:
            return 1.0
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return 1.0
        norm = float(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        )
        prev = self.ema.get(kind)
        self.ema[kind] = norm if prev is None else self.decay * prev + (1 - self.decay) * norm
        if len(self.ema) < len(self.kinds):  # until every kind has been seen once
            return 1.0
        scale = balance_scale(self.ema, kind)
        for g in grads:
            g.mul_(scale)
        return scale

    def state_dict(self) -> dict:
        return {"ema": dict(self.ema)}

    def load_state_dict(self, state: dict) -> None:
        self.ema = {str(k): float(v) for k, v in state.get("ema", {}).items()}
