"""Routing and the mask selector of SAM-Med3D-MoE (paper Eq. 1), as pure tensor functions.

The gate outputs ``m + 1`` probabilities: index 0 is "no specific expert" (the original
tasks), indices ``1..m`` are the task experts. ``s_top`` is the largest probability among the
``m`` experts; the selector uses the expert only when ``s_top > tau``.

The weightings (Table 2's rows) are named after what they compute: ``s_top`` (Eq. 1), ``avg``
(the arithmetic mean) and ``logit-softmax``, the paper's Aft_weight. The paper describes
Aft_weight only as "a softmax-fused output of the top expert mask decoder and the general
model's decoder"; medmoe reads it as a voxel-wise softmax over the two decoders' logits (see
:func:`logit_softmax`). The old value ``softmax`` is an alias of ``logit-softmax`` (it once
computed ``sigmoid(2 s_top - 1)``, a second reading that is gone).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from medmoe.errors import InputError

WEIGHTINGS = ("s_top", "avg", "logit-softmax")
WEIGHTING_ALIASES = {"softmax": "logit-softmax"}  # the old name; read as its canonical value
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


def weighting_name(weighting: str) -> str:
    """The canonical name of ``weighting`` (an alias maps to its value); unknown: InputError."""
    name = WEIGHTING_ALIASES.get(weighting, weighting)
    if name not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r}; use {', '.join(WEIGHTINGS)}")
    return name


def expert_weight(s_top: Tensor, *, weighting: str = "s_top") -> Tensor:
    """Weight ``w`` of the expert's mask, one per sample (the general mask gets ``1 - w``).

    ``s_top`` (paper Eq. 1): ``w = s_top``. ``avg``: ``w = 1/2``, the arithmetic mean.
    ``logit-softmax`` has no per-sample weight (it weighs each voxel): see :func:`fuse`.
    """
    name = weighting_name(weighting)
    if name == "s_top":
        return s_top
    if name == "avg":
        return torch.full_like(s_top, 0.5)
    raise InputError(f"weighting {name!r} weighs each voxel, not each sample; use fuse()")


def logit_softmax(general: Tensor, expert: Tensor) -> Tensor:
    """Aft_weight: a voxel-wise softmax over the two logits, ``p = softmax(l_g, l_e)``, fused
    ``p_g l_g + p_e l_e`` (the more confident decoder dominates each voxel). Same shapes in
    and out; the result lies between the two logits."""
    stacked = torch.stack([general, expert])
    return (stacked.softmax(dim=0) * stacked).sum(dim=0)


def fuse(general: Tensor, expert: Tensor, s_top: Tensor, *, weighting: str = "s_top") -> Tensor:
    """The expert's logits fused with the general decoder's, for every sample (the caller, or
    :func:`select_masks`, decides *whether*): ``(1 - w) l_g + w l_e`` with ``w`` from
    :func:`expert_weight`, or :func:`logit_softmax`. ``general``/``expert`` ``(B, ...)``,
    ``s_top`` ``(B,)``."""
    if weighting_name(weighting) == "logit-softmax":
        return logit_softmax(general, expert)
    w = expert_weight(s_top, weighting=weighting).to(general.dtype)
    w = w.reshape(-1, *([1] * (general.ndim - 1)))
    return (1 - w) * general + w * expert


def select_masks(
    general: Tensor,
    expert: Tensor,
    s_top: Tensor,
    *,
    tau: float = DEFAULT_TAU,
    weighting: str = "s_top",
) -> Tensor:
    """Paper Eq. 1 on logits: :func:`fuse` where ``s_top > tau``, else ``M_g``.

    ``general``/``expert`` are ``(B, ...)``; ``s_top`` is ``(B,)``. At ``s_top == tau`` the
    general mask is returned (the inequality is strict, as in the paper).
    """
    mixed = fuse(general, expert, s_top, weighting=weighting)
    use = (s_top > tau).reshape(-1, *([1] * (general.ndim - 1)))
    return torch.where(use, mixed, general)
