"""The whole model's cost, dense routing vs top-p: FLOPs (``torch.utils.flop_counter``) and
forward time, with the backbone's share, beside the ratio of the task heads alone.

The heads-only ratio (``benchmarks/fundus_routing.py``) leaves out the shared ResNet-50, which
every sample runs whatever the routing; the whole-model ratio is what a user's time follows.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from medmoe.multitask.data.preprocess import normalize
from medmoe.multitask.model.moe import MultiTaskMoE


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats


@torch.no_grad()
def model_cost(model: MultiTaskMoE, images: Tensor, *, repeats: int = 3) -> dict[str, float]:
    """FLOPs and seconds of one forward pass over ``images`` ``(B, 3, H, W)`` in [0, 1]:
    ``{dense,top_p,backbone}_{flops,s}``, the ratios ``whole_ratio_{flops,s}`` (top-p / dense)
    and ``heads_ratio_flops`` (the same without the backbone), and ``experts_kept`` (mean)."""
    model.eval()
    cfg = model.config
    x = normalize(images.to(next(model.parameters()).device), mean=cfg.mean, std=cfg.std)
    res: dict[str, float] = {}
    for name, fn in (
        ("dense", lambda: model(x, dense=True)),
        ("top_p", lambda: model(x, dense=False)),
        ("backbone", lambda: model.backbone(x)),
    ):
        res[f"{name}_flops"] = _flops(fn)
        res[f"{name}_s"] = _seconds(fn, repeats)
    res["whole_ratio_flops"] = res["top_p_flops"] / res["dense_flops"]
    res["whole_ratio_s"] = res["top_p_s"] / res["dense_s"]
    heads_dense = res["dense_flops"] - res["backbone_flops"]
    res["heads_ratio_flops"] = (res["top_p_flops"] - res["backbone_flops"]) / heads_dense
    out = model(x, dense=False)
    res["experts_kept"] = float(torch.stack([o.mask.sum(-1).float() for o in out.values()]).mean())
    return res
