"""Losses of the multi-task MoE: MONAI's focal and Dice losses, cross-entropy, gate auxiliaries.

Gate auxiliaries (each with its own weight; 0 disables it):
- **L1 sparsity**: ``sum_e p_e - max_e p_e``, the L1 mass outside the top expert (the L1 norm of
  a softmax is always 1, so the norm of the non-top part is what can be pushed to 0).
- **Entropy** ``H(p) = -sum_e p_e log p_e`` times ``entropy_sign``. The report adds a "negative
  entropy" term, ``-H``, whose minimisation *raises* the gate's entropy (spreads the weight over
  experts, like a balancing term); DynMoE (Huang et al.) instead *minimises* ``H`` so that each
  gate becomes confident and top-p keeps few experts. ``entropy_sign=-1`` is the report's
  choice, ``+1`` DynMoE's.
- **Load balancing** (Switch Transformer): ``E * sum_e f_e P_e`` with ``f_e`` the fraction of
  samples that use expert e and ``P_e`` its mean probability; 1 when perfectly balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AuxWeights:
    l1: float = 0.0
    entropy: float = 0.01
    entropy_sign: float = -1.0
    balance: float = 0.01


def gate_aux_loss(probs: Tensor, mask: Tensor, w: AuxWeights) -> Tensor:
    loss = probs.new_zeros(())
    if w.l1:
        loss = loss + w.l1 * (probs.sum(-1) - probs.max(-1).values).mean()
    if w.entropy:
        entropy = -(probs * torch.log(probs.clamp_min(1e-8))).sum(-1).mean()
        loss = loss + w.entropy * w.entropy_sign * entropy
    if w.balance:
        e = probs.shape[-1]
        loss = loss + w.balance * e * (mask.float().mean(0) * probs.mean(0)).sum()
    return loss


class ClassificationLoss(torch.nn.Module):
    """Cross-entropy + MONAI focal loss (softmax)."""

    def __init__(self, *, gamma: float = 2.0) -> None:
        super().__init__()
        from monai.losses import FocalLoss

        self.focal = FocalLoss(gamma=gamma, use_softmax=True, to_onehot_y=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        onehot = F.one_hot(target, logits.shape[-1]).float()
        return F.cross_entropy(logits, target) + self.focal(logits, onehot)


class SegmentationLoss(torch.nn.Module):
    """MONAI focal (sigmoid) + Dice (sigmoid), per lesion channel."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss, FocalLoss

        self.focal = FocalLoss(gamma=2.0, use_softmax=False)
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.focal(logits, target) + self.dice(logits, target)
