"""How long to pretrain the MRI demo's general model, chosen on Subject A's validation crops.

Usage: ``python benchmarks/demo_pretrain_steps.py [--out runs/demo-choice] [--steps 800 1600]``

The general model of ``medmoe demo`` is pretrained from scratch (the full config's crops, seed,
learning rate and clicks) once per ``--steps`` value. Each model gets the one-click Dice (a
click at the label's deepest voxel) on:
- a sample of its own pretraining crops (crops 0, 5 and 10 of every *other* structure), and
- Subject A validation crops of the other structures: a split of their own (``val`` seeds),
  never trained on and never in the demo's report.

Subject B and Subject A's evaluation crops are not read. The last line names the step count with
the best validation Dice, which is what ``DemoConfig.pretrain_steps`` should be.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE = {"0", "5", "10"}  # the pretraining crops (indices per structure) scored as "train"


def one_click_dice(model, crops) -> float:
    """Mean Dice of one centre click per crop, through the trainers' validation measure."""
    from medmoe.moe.validate import one_click_dice as per_crop

    with torch.inference_mode():
        data = [
            {
                "embedding": model.image_encoder(torch.from_numpy(c.image)[None, None])[0],
                "label": c.label,
            }
            for c in crops
        ]
    scores = per_crop(
        lambda emb, pts, lab: model.decode(emb, points=(pts, lab))[0],
        data,
        size=model.config.img_size,
        device=torch.device("cpu"),
    )
    return float(np.mean(scores))


def main() -> None:
    from medmoe.demo.config import FULL
    from medmoe.demo.crops import make_crops
    from medmoe.demo.pretrain import pretrain_general
    from medmoe.demo.run import _subject, build_train_crops

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo-choice"))
    ap.add_argument("--steps", type=int, nargs="+", default=[800, 1600])
    ap.add_argument("--val-crops", type=int, default=2)
    args = ap.parse_args()
    cfg = FULL
    atlas = _subject("A", cfg)
    crops = build_train_crops(cfg, args.out, atlas)
    jobs = [(v, i, 0) for v in cfg.other for i in range(args.val_crops)]
    val = make_crops(
        atlas, jobs, subject="A", split="val", jitter_mm=cfg.jitter_mm,
        cache_dir=args.out / "crops", seed=cfg.seed,
    )  # fmt: skip
    sample = [c for c in crops.pretrain if c.task == 0 and c.key.split("|")[4] in SAMPLE]
    print(
        f"pretraining crops {len(crops.pretrain)}, validation crops {len(val)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for steps in args.steps:
        t0 = time.perf_counter()
        model, losses = pretrain_general(
            crops.pretrain, steps=steps, lr=cfg.pretrain_lr, clicks=cfg.pretrain_clicks,
            box_prob=cfg.box_prob, seed=cfg.seed, device="cpu", resume=False,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        row = {
            "steps": steps,
            "seconds": round(seconds, 1),
            "epoch losses": [round(x, 3) for x in losses],
            "train Dice": round(one_click_dice(model, sample), 3),
            "validation Dice": round(one_click_dice(model, val), 3),
        }
        print(json.dumps(row))
        rows.append(row)
    best = max(rows, key=lambda r: r["validation Dice"])
    print(f"best on Subject A validation: {best['steps']} steps ({best['validation Dice']})")


if __name__ == "__main__":
    main()
