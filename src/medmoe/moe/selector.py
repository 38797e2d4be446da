"""Routing and the mask selector of SAM-Med3D-MoE (paper Eq. 1), as pure tensor functions.

The gate outputs ``m + 1`` probabilities: index 0 is "no specific expert" (the original
tasks), indices ``1..m`` are the task experts. ``s_top`` is the largest probability among the
``m`` experts; the selector uses the expert only when ``s_top > tau``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from medmoe.errors import InputError

WEIGHTINGS = ("s_top", "avg", "softmax")
DEFAULT_TAU = 0.5


class Routing(NamedTuple):
    expert: Tensor  # (B,) long in 1..m: the top expert's gate index
    s_top: Tensor  # (B,) its probability
    use_expert: Tensor  # (B,) bool: s_top > tau


def route(gate_probs: Tensor, *, tau: float = DEFAULT_TAU) -> Routing:
    """Top-1 expert among indices ``1..m`` of ``(B, m + 1)`` gate probabilities."""
    if gate_probs.ndim != 2 or gate_probs.shape[1] < 2:
        raise InputError(
            f"gate_probs must be (B, m + 1) with m >= 1, got {tuple(gate_probs.shape)}"
        )
    s_top, idx = gate_probs[:, 1:].max(dim=1)
    return Routing(expert=idx + 1, s_top=s_top, use_expert=s_top > tau)


def expert_weight(s_top: Tensor, *, weighting: str = "s_top") -> Tensor:
    """Weight of the expert's mask when it is used (the general mask gets ``1 - w``).

    ``s_top`` (paper Eq. 1): ``w = s_top``. ``avg``: ``w = 1/2``, the arithmetic mean.
    ``softmax``: a softmax over the two confidences ``(1 - s_top, s_top)``, i.e.
    ``w = e^s / (e^(1-s) + e^s) = sigmoid(2 s - 1)``, a softer version of ``s_top``.
    """
    if weighting == "s_top":
        return s_top
    if weighting == "avg":
        return torch.full_like(s_top, 0.5)
    if weighting == "softmax":
        return torch.softmax(torch.stack([1 - s_top, s_top], dim=-1), dim=-1)[..., 1]
    raise InputError(f"unknown weighting {weighting!r}; use {', '.join(WEIGHTINGS)}")


def select_masks(
    general: Tensor,
    expert: Tensor,
    s_top: Tensor,
    *,
    tau: float = DEFAULT_TAU,
    weighting: str = "s_top",
) -> Tensor:
    """Paper Eq. 1 on logits: ``(1 - w) M_g + w M_top`` where ``s_top > tau``, else ``M_g``.

    ``general``/``expert`` are ``(B, ...)``; ``s_top`` is ``(B,)``. At ``s_top == tau`` the
    general mask is returned (the inequality is strict, as in the paper).
    """
    w = expert_weight(s_top, weighting=weighting).to(general.dtype)
    w = w.reshape(-1, *([1] * (general.ndim - 1)))
    use = (s_top > tau).reshape(w.shape)
    mixed = (1 - w) * general + w * expert
    return torch.where(use, mixed, general)
