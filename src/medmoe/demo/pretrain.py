"""Stage 1: pretrain a small SAM-Med3D (the ``tiny`` config) from scratch on the original tasks,
with the interactive click simulation, on the shared training engine. The result plays the
published model's role: the frozen general expert."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from medmoe.data.training import InMemoryCrops, Sample
from medmoe.pretrain.step import PretrainStep
from medmoe.sam3d import Sam3D, build_sam3d
from medmoe.train.engine import LoopConfig, RunOptions, fit
from medmoe.train.task import click_task


def pretrain_general(
    samples: list[Sample],
    *,
    steps: int,
    lr: float,
    clicks: int,
    box_prob: float,
    seed: int,
    run_dir: str | os.PathLike | None = None,
    device: torch.device | str = "auto",
    resume: bool = True,
) -> tuple[Sam3D, list[float]]:
    """About ``steps`` optimizer steps (whole epochs over ``samples``, batch 1), AdamW with a
    5 % linear warm-up then cosine decay, gradients clipped at norm 1. Returns the model and
    the mean loss of each epoch. ``run_dir`` keeps the epoch checkpoints (resumable)."""
    torch.manual_seed(seed)
    model = build_sam3d("tiny").train()
    data = InMemoryCrops(samples)
    loop = LoopConfig(
        epochs=max(1, math.ceil(steps / len(data))),
        schedule="cosine",
        warmup_steps=max(1, steps // 20),
        grad_clip=1.0,
        seed=seed,
    )
    task = click_task(
        model=model,
        step=PretrainStep(model=model, clicks=clicks, box_prob=box_prob),
        data=data,
        config={"lr": lr, "clicks": clicks, "box_prob": box_prob, "steps": steps},
        param_groups=[{"params": list(model.parameters()), "lr": lr}],
        weight_decay=1e-4,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = RunOptions(
            run_dir=Path(run_dir) if run_dir is not None else Path(tmp),
            resume=resume and run_dir is not None,
            desc="pretrain general (tiny)",
            keep_checkpoints=1,  # only a resume reads them
        )
        history = fit(task, loop=loop, run=run, device=device)
    return model.eval(), [h["loss"] for h in history]
