"""Routing for the multi-task MoE, as pure functions of gate probabilities.

- **Dense** (warm-up): every expert runs, weighted by the gate's normalised probabilities, for
  the first ``warmup_fraction`` of the epochs (the report uses 50 %).
- **Top-p** (Huang et al., ACL 2024, "dynamic routing"): sort the experts by probability and
  keep them until their cumulative probability reaches ``p`` (the expert that crosses ``p`` is
  kept, so at least one expert always runs). The kept weights are renormalised to sum to 1, or
  left as the raw probabilities (``renormalize=False``, as in DynMoE). Renormalised weights are
  straight-through (:func:`straight_through`): the forward value is renormalised, the gradient
  is that of the raw kept probabilities, so the task loss still trains the gate when a single
  expert is kept (its renormalised weight is the constant 1, whose gradient is 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from medmoe.errors import InputError


def use_dense(epoch: int, epochs: int, warmup_fraction: float = 0.5) -> bool:
    """True during the dense warm-up: epochs ``0 .. ceil(warmup_fraction * epochs) - 1``."""
    if not 0 <= warmup_fraction <= 1:
        raise InputError(f"warmup_fraction must be in [0, 1], got {warmup_fraction}")
    return epoch < warmup_fraction * epochs


def top_p_mask(probs: Tensor, p: float) -> Tensor:
    """``(B, E)`` bool: the smallest set of most probable experts whose mass reaches ``p``."""
    if not 0 < p <= 1:
        raise InputError(f"top-p threshold must be in (0, 1], got {p}")
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the experts ranked above each one
    keep_sorted = before < p - 1e-12  # keep while the mass so far has not reached p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def route_weights(
    probs: Tensor, *, dense: bool, p: float = 0.5, renormalize: bool = True
) -> tuple[Tensor, Tensor]:
    """``(weights, mask)`` ``(B, E)``: dense weights are the probabilities (all experts run)."""
    if dense:
        weights = probs / probs.sum(dim=-1, keepdim=True)
        return weights, torch.ones_like(probs, dtype=torch.bool)
    mask = top_p_mask(probs, p)
    weights = probs * mask
    if renormalize:
        weights = straight_through(weights / weights.sum(dim=-1, keepdim=True), weights)
    return weights, mask


def straight_through(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` in the forward pass, ``surrogate``'s gradient in the backward pass."""
    return surrogate + (value - surrogate).detach()


def group_by_expert_set(mask: Tensor) -> dict[tuple[int, ...], Tensor]:
    """Sample indices grouped by the set of experts they use (for sparse dispatch)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(mask.tolist()):
        groups.setdefault(tuple(e for e, used in enumerate(row) if used), []).append(i)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in groups.items()}
