"""Validation measures of experts and the MoE on held-out crops: one-click Dice, the choice of
tau, routing accuracy. Each splits a device part (prompts built on the model's device, logits
returned there) from a host part (NumPy metrics), so the device part can be checked without a
GPU (tests/train/test_device_discipline.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.eval.clicks import first_click
from medmoe.eval.metrics import dice
from medmoe.moe.model import MoEOutput, MoESam3D
from medmoe.moe.selector import DEFAULT_TAU

PredictLow = Callable[[Tensor, Tensor, Tensor], Tensor]  # (embedding, points, labels) -> logits


def center_click(label: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """The protocol's first click (the deepest voxel of ``label``) as ``(1,1,3)``/``(1,1)``
    prompt tensors on ``device``."""
    c = first_click(label, method="center")
    pts = torch.as_tensor(c.point, dtype=torch.float32, device=device).reshape(1, 1, 3)
    return pts, torch.ones(1, 1, dtype=torch.long, device=device)


def upsample(low: Tensor, size: int) -> Tensor:
    return F.interpolate(low.float(), size=(size,) * 3, mode="trilinear", align_corners=False)


def mask_of(low: Tensor, size: int) -> np.ndarray:
    """Host side: the thresholded full-size mask of one sample's low-resolution logits."""
    return (upsample(low, size)[0, 0] > 0).cpu().numpy()


def click_logits(predict_low: PredictLow, item: dict, *, device: torch.device) -> Tensor:
    """Device side: the low-resolution logits of one crop prompted by its centre click."""
    emb = item["embedding"].to(device).unsqueeze(0)
    return predict_low(emb, *center_click(item["label"], device))


@torch.no_grad()
def one_click_dice(
    predict_low: PredictLow, data, *, size: int, device: torch.device
) -> list[float]:
    """Dice of a one-click prediction (deepest voxel of the label) on each crop of ``data``."""
    return [
        dice(mask_of(click_logits(predict_low, item, device=device), size), item["label"])
        for item in data
    ]


@torch.no_grad()
def moe_click(moe: MoESam3D, item: dict, *, tau: float, device: torch.device) -> MoEOutput:
    """The MoE's output for one crop prompted by its centre click (device side)."""
    emb = item["embedding"].to(device).unsqueeze(0)
    pts, lab = center_click(item["label"], device)
    return moe.decode(emb, points=(pts, lab), tau=tau)


@torch.no_grad()
def choose_tau(moe: MoESam3D, data, grid, *, device: torch.device) -> tuple[float, dict]:
    """The tau of ``grid`` that maximises the mean over {original tasks, new tasks} of mean
    one-click Dice on the validation crops. Returns ``(tau, {tau: score})``."""
    size = moe.base.config.img_size
    cached = []
    for item in data:
        out = moe_click(moe, item, tau=-1.0, device=device)  # the expert always runs
        s_top = float(out.routing.s_top[0])
        d_gen = dice(mask_of(out.general_low_res_logits, size), item["label"])
        d_mix = dice(mask_of(out.low_res_logits, size), item["label"])
        cached.append((item["task"] > 0, s_top, d_gen, d_mix))
    scores = {}
    for tau in grid:
        groups: dict[bool, list[float]] = {False: [], True: []}
        for is_new, s_top, d_gen, d_mix in cached:
            groups[is_new].append(d_mix if s_top > tau else d_gen)
        means = [float(np.mean(v)) for v in groups.values() if v]
        scores[float(tau)] = float(np.mean(means)) if means else 0.0
    # ties (within 1e-3 Dice: noise on a small validation split) go to the tau closest to the
    # paper's default 0.5, not to an extreme of a plateau
    top = max(scores.values())
    best = min(
        (t for t, v in scores.items() if v >= top - 1e-3), key=lambda t: (abs(t - DEFAULT_TAU), t)
    )
    return best, scores


@torch.no_grad()
def routing_accuracy(moe: MoESam3D, data, *, device: torch.device) -> float:
    """Fraction of crops whose gate class (argmax over the m + 1 outputs: 0 = no specific
    expert, i = expert i) is their task."""
    good = 0
    for item in data:
        out = moe_click(moe, item, tau=moe.tau, device=device)
        good += int(out.gate_probs[0].argmax().item() == item["task"])
    return good / max(len(data), 1)


def validate_moe(moe: MoESam3D, val, *, tau: float | None, grid, device: torch.device) -> dict:
    """After gate training: choose tau on the validation crops ``val`` (``tau`` None; the
    choice is set on ``moe``) and measure routing accuracy. Returns the training report's
    ``tau`` and, where ``val`` is not empty, ``tau_scores`` and ``routing_accuracy``."""
    moe.eval()
    report: dict = {}
    if tau is None and len(val):
        moe.tau, report["tau_scores"] = choose_tau(moe, val, grid, device=device)
    report["tau"] = moe.tau
    if len(val):
        report["routing_accuracy"] = routing_accuracy(moe, val, device=device)
    return report
