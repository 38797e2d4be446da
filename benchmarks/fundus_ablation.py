"""Fundus demo ablation: the multi-task MoE trained with and without per-expert supervision.

Usage: ``python benchmarks/fundus_ablation.py [--expert-loss 0 1] [--lr 1e-3] [--seed 0]
[--threads 2] [--out runs/fundus-ablation]``

One run, the same data, model and schedule as ``medmoe demo fundus`` (full preset) for every
setting; only ``FundusTrainConfig.expert_loss`` (and, when given, the lr and the training seed)
differ. Prints the **validation** metrics of each setting side by side (the demo's settings are
chosen here, on validation; its report's headline is the test split, which this never reads).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expert-loss", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--lr", type=float, help="every parameter's lr (default: the demo's)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (the data stay the demo's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/fundus-ablation"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from medmoe.demo.fundus import MODELS, PRESETS, demo_data, train_demo_model
    from medmoe.multitask.constants import LESIONS
    from medmoe.multitask.evaluation.evaluate import evaluate_fundus

    metrics = ("dr_acc", "dme_acc", *(f"{x}_{m}" for x in LESIONS for m in ("dice", "aupr")))
    preset = dict(PRESETS["full"], **({"lr": args.lr} if args.lr else {}))
    data = demo_data(preset)
    train, val = data["train"], data["val"]
    moe_name, moe_kw = next(iter(MODELS.items()))
    print(
        f"machine: {platform.machine()} threads={args.threads} torch={torch.__version__} | "
        f"{moe_name}, {preset['size'][0]}x{preset['size'][1]}, {preset['epochs']} epochs, "
        f"lr {preset['lr']}, seed {args.seed}"
    )
    rows = {}
    for weight in args.expert_loss:
        t = time.perf_counter()
        model, _ = train_demo_model(
            preset=preset,
            model_kw=moe_kw,
            train=train,
            out_dir=args.out / f"expert_loss{weight:g}_lr{preset['lr']:g}_seed{args.seed}",
            expert_loss=weight,
            seed=args.seed,
        )
        rows[weight] = evaluate_fundus(model, val)
        print(f"expert_loss {weight:g}: trained and evaluated in {time.perf_counter() - t:.0f} s")
    print("validation split")
    print("| expert_loss | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for weight, r in rows.items():
        print(f"| {weight:g} | " + " | ".join(f"{r[m]:.3f}" for m in metrics) + " |")
    print(json.dumps({f"{w:g}": {m: round(r[m], 4) for m in metrics} for w, r in rows.items()}))


if __name__ == "__main__":
    main()
