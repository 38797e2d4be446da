"""Fundus MoE routing cost: the expert heads with dense routing vs top-p sparse dispatch.

Usage: ``python benchmarks/fundus_routing.py [--size 712,1072] [--batch 2] [--repeats 3]
[--threads 2] [--p 0.5]``

One run, same backbone features and weights for both sides: the time of the three task heads
(DR and DME classification experts, segmentation experts with ASPP + DeepLabV3+ decoder) with
all 3 experts (dense) against top-p dispatch. The gates are set so that top-p keeps a measured
mean of experts per sample (reported); timings are interleaved, best of ``--repeats``.
Target: top-p with a mean <= 1.5 of 3 experts takes <= 0.65x the dense head time.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="712,1072")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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

    best = {"dense": float("inf"), "top-p": float("inf")}
    with torch.no_grad():
        heads(True), heads(False)  # warm-up
        for _ in range(args.repeats):
            for name, dense in (("dense", True), ("top-p", False)):
                t = time.perf_counter()
                used = heads(dense)
                best[name] = min(best[name], time.perf_counter() - t)
                if not dense:
                    mean_used = sum(used) / len(used)
    print(
        f"machine: {platform.machine()} threads={args.threads} torch={torch.__version__} "
        f"input {args.batch}x3x{h}x{w}, 3 experts/task, heads: dr, dme, seg"
    )
    print(
        f"dense heads: {best['dense']:.3f} s | top-p (p={args.p}) heads: {best['top-p']:.3f} s | "
        f"mean experts used: {mean_used:.2f} of 3"
    )
    print(
        f"ratio top-p / dense: {best['top-p'] / best['dense']:.3f}   (target <= 0.65 at <= 1.5 experts)"
    )


if __name__ == "__main__":
    main()
