"""Fundus MoE routing cost: the expert heads with dense routing vs top-p sparse dispatch.

Usage: ``python benchmarks/fundus_routing.py [--size 712,1072] [--batch 2] [--repeats 3]
[--threads 2] [--p 0.5] > benchmarks/results/fundus_routing_whole_cpu.txt``

One run, same backbone features and weights for both sides: the time of the three task heads
(DR and DME classification experts, segmentation experts with ASPP + DeepLabV3+ decoder) with
all 3 experts (dense) against top-p dispatch. The gates are set so that top-p keeps a measured
mean of experts per sample (reported); timings are interleaved, best of ``--repeats``.
Target: top-p with a mean <= 1.5 of 3 experts takes <= 0.65x the dense head time.

The heads alone leave out the shared ResNet-50, which every sample runs whatever the routing
(issue #27, item 6), so the script also prints the **whole model**: its FLOPs counted with
``torch.utils.flop_counter`` on the meta device (shapes only, nothing computed): dense (3 experts
per task) against one expert kept per task (the same model built with 1 expert, which is what
top-p at 1.00 experts runs, gate aside), with the backbone's share; and the whole forward time,
the backbone's measured time (best of ``--repeats``) plus each side's head time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def _gflop(fn, *args, **kwargs) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args, **kwargs)
    return counter.get_total_flops() / 1e9


def whole_model_flops(h: int, w: int, batch: int, p: float) -> dict[str, float]:
    """GFLOP of one forward pass on the meta device: dense with 3 experts per task, one expert
    per task (top-p keeping one), and the backbone."""
    from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE

    out = {}
    for name, experts in (("dense", 3), ("one expert", 1)):
        with torch.device("meta"):
            config = MultiTaskConfig(image_size=(h, w), top_p=p, num_experts=experts)
            model = MultiTaskMoE(config=config).eval()
            x = torch.empty(batch, 3, h, w)
        out[name] = _gflop(model, x, dense=True)
        out["backbone"] = _gflop(model.backbone, x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="712,1072")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    h, w = (int(v) for v in args.size.split(","))
    from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE

    torch.manual_seed(0)
    model = MultiTaskMoE(config=MultiTaskConfig(image_size=(h, w), top_p=args.p)).eval()
    x = torch.randn(args.batch, 3, h, w)
    with torch.no_grad():
        low, high = model.backbone(x)
        pooled = high.mean(dim=(2, 3))
        for head in model.heads.values():  # a trained, confident gate: one expert gets ~0.8
            head.gate.weight.zero_()
            head.gate.bias.copy_(torch.tensor([1.6, 0.0, 0.2]))

    def heads(dense: bool):
        used = []
        for head in model.heads.values():
            out = head(low, high, pooled, dense=dense, p=args.p)
            used.append(out.mask.sum(-1).float().mean().item())
        return used

    best = {"dense": float("inf"), "top-p": float("inf"), "backbone": float("inf")}
    with torch.no_grad():
        heads(True), heads(False)  # warm-up
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.backbone(x)
            best["backbone"] = min(best["backbone"], time.perf_counter() - t)
            for name, dense in (("dense", True), ("top-p", False)):
                t = time.perf_counter()
                used = heads(dense)
                best[name] = min(best[name], time.perf_counter() - t)
                if not dense:
                    mean_used = sum(used) / len(used)
    print(
        f"machine: {platform.machine()} threads={args.threads} torch={torch.__version__} "
        f"input {args.batch}x3x{h}x{w}, 3 experts/task, heads: dr, dme, seg; load average "
        f"(1 min) {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"dense heads: {best['dense']:.3f} s | top-p (p={args.p}) heads: {best['top-p']:.3f} s | "
        f"mean experts used: {mean_used:.2f} of 3"
    )
    print(
        f"ratio top-p / dense: {best['top-p'] / best['dense']:.3f}   (target <= 0.65 at <= 1.5 experts)"
    )
    g = whole_model_flops(h, w, args.batch, args.p)
    whole_dense, whole_top = best["backbone"] + best["dense"], best["backbone"] + best["top-p"]
    print(
        f"whole model, GFLOP: dense {g['dense']:.1f} | one expert per task {g['one expert']:.1f} | "
        f"backbone {g['backbone']:.1f} ({g['backbone'] / g['dense']:.0%} of dense) | "
        f"ratio {g['one expert'] / g['dense']:.3f}"
    )
    print(
        f"whole model, s (backbone {best['backbone']:.3f} + heads): dense {whole_dense:.3f} | "
        f"top-p {whole_top:.3f} | ratio {whole_top / whole_dense:.3f}"
    )


if __name__ == "__main__":
    main()
