"""The interactive (click-simulation) training loss of SAM-Med3D: expert finetuning, gate
training and the demo's pretraining. It lives beside the MoE, not in the generic training
engine, because it is SAM-specific and needs the evaluation protocol's click rules.

One step simulates a short interactive session on one crop: the first prompt comes from the
ground truth (a click inside it, or its bounding box), every later click is placed on the
current error, and the previous low-resolution logits are fed back (detached). The loss is
summed over the iterations. ``decode(points, labels, box, mask_input)`` is any function that
returns ``(1, 1, s, s, s)`` low-resolution logits, or ``(logits, extra_loss)`` where a scalar
term (the gate's cross-entropy) is added to that iteration's loss, so the same loop trains a
decoder, a gate or a whole model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.eval.clicks import box_from_mask, first_click, next_click

Decode = Callable[[Tensor | None, Tensor | None, Tensor | None, Tensor | None], Tensor]


def dice_ce_loss() -> torch.nn.Module:
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, squared_pred=False, smooth_nr=1e-5, smooth_dr=1e-5)


def first_prompt(
    gt: np.ndarray, *, rng: np.random.Generator, box_prob: float, device: torch.device | str
) -> tuple[list[np.ndarray], list[int], Tensor | None]:
    """A session's first prompt from the ground truth: its box ``(1, 6)`` with probability
    ``box_prob`` (and no points), else one positive click at a uniform random voxel of it.
    Returns ``(points, labels, box)``; the lists grow as the session adds clicks."""
    if rng.random() < box_prob:
        box = torch.as_tensor(box_from_mask(gt), dtype=torch.float32, device=device).unsqueeze(0)
        return [], [], box
    c = first_click(gt, method="random", rng=rng)
    return [c.point], [c.label], None


def point_prompt(
    points: list[np.ndarray], labels: list[int], device: torch.device | str
) -> tuple[Tensor, Tensor] | None:
    """The click lists as ``((1, N, 3) float32, (1, N) long)`` prompt tensors on ``device``
    (``None`` without clicks)."""
    if not points:
        return None
    pts = torch.as_tensor(np.stack(points), dtype=torch.float32, device=device).unsqueeze(0)
    return pts, torch.as_tensor(labels, dtype=torch.long, device=device).unsqueeze(0)


def interactive_loss(
    decode: Decode,
    label: np.ndarray,
    *,
    size: int,
    n_iter: int,
    rng: np.random.Generator,
    box_prob: float = 0.0,
    loss_fn: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, np.ndarray]:
    """Run ``n_iter`` click iterations; returns ``(summed loss, final mask)``.

    The loss is a graph for the caller (the training engine) to back-propagate once: the
    iterations share the image embedding's graph, and the fed-back logits are detached.
    """
    loss_fn = loss_fn or dice_ce_loss()
    gt = np.asarray(label, dtype=bool)
    target = torch.from_numpy(gt.astype(np.float32)).to(device).reshape(1, 1, *gt.shape)
    points, labels, box = first_prompt(gt, rng=rng, box_prob=box_prob, device=device)
    low = None
    total: Tensor | None = None
    mask = np.zeros_like(gt)
    for it in range(n_iter):
        if it > 0:
            c = next_click(mask, gt, method="random", rng=rng)
            if c is not None:
                points.append(c.point)
                labels.append(c.label)
        pts, lab = point_prompt(points, labels, device) or (None, None)
        low = decode(pts, lab, box, None if low is None else low.detach())
        extra = 0.0
        if isinstance(low, tuple):
            low, extra = low
        logits = F.interpolate(low.float(), size=(size,) * 3, mode="trilinear", align_corners=False)
        loss = loss_fn(logits, target) + extra
        total = loss if total is None else total + loss
        mask = (logits.detach()[0, 0] > 0).cpu().numpy()
    return total, mask
