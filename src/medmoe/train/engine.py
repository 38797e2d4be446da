"""The one training loop every medmoe trainer runs on.

Read it top to bottom like nanoGPT's ``train.py``: set up the process (torchrun or not), build the
data loader and the optimizer, resume, then for each epoch and step: seed, forward under
autocast, backward outside it, (accumulate,) clip, step, schedule; write an atomic checkpoint at
every epoch end. A trainer hands :func:`fit` a :class:`~medmoe.train.task.Task` (the model, its
step, its data, its optimizer, its config, optional validation), a
:class:`~medmoe.train.task.LoopConfig` (how the loop runs, saved with the run) and
:class:`~medmoe.train.task.RunOptions` (where it writes), all from :mod:`medmoe.train.task`.
The step is a callable that turns one batch into a scalar loss (the interactive click loss for
SAM-Med3D, alternating classification/segmentation batches for fundus); it calls the module it
finds in ``StepContext.module``. It is deliberately not a framework: a trainer that needs
something else writes its own ~20 lines around :func:`fit`.

Why not Lightning Fabric or Accelerate: both would be one more heavy dependency for ~200 lines,
and neither gives the resume contract medmoe needs (a checkpoint written with another config is
refused, and a resumed CPU run is bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from medmoe.errors import InputError
from medmoe.train import distributed as dist_utils
from medmoe.train import guard
from medmoe.train.amp import autocast
from medmoe.train.checkpoint import checkpoint_path, log_epoch, save_training_state
from medmoe.train.resume import resume
from medmoe.train.schedule import lr_factor
from medmoe.train.task import (
    LOOP_DEFAULTS,
    EpochDataset,
    LoopConfig,
    OptimizerSpec,
    RunOptions,
    Step,
    StepContext,
    Task,
    identity_collate,
)

__all__ = [
    "EpochDataset",
    "LoopConfig",
    "OptimizerSpec",
    "RunOptions",
    "Step",
    "StepContext",
    "Task",
    "fit",
    "identity_collate",
]


def _loader(task: Task, loop: LoopConfig, ctx: dist_utils.DistContext, epoch: int) -> DataLoader:
    """Shuffled by (seed, epoch); each rank takes its share (``DistributedSampler``), equal
    step counts on every rank (``drop_last``); or the task's own batch sampler."""
    workers = loop.workers if loop.workers is not None else (4 if ctx.device.type == "cuda" else 0)
    common = {
        "num_workers": workers,
        "pin_memory": ctx.device.type == "cuda",
        "collate_fn": task.collate,
        "persistent_workers": False,
    }
    if task.batches is not None:
        return DataLoader(task.data, batch_sampler=list(task.batches(epoch, ctx)), **common)
    if len(task.data) < ctx.world_size:
        raise InputError(
            f"{len(task.data)} training samples cannot be split over {ctx.world_size} processes"
        )
    sampler = DistributedSampler(
        task.data,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=loop.seed,
        drop_last=ctx.world_size > 1,
    )
    sampler.set_epoch(epoch)
    return DataLoader(task.data, batch_size=loop.batch_size, sampler=sampler, **common)


def _scheduler(
    optimizer: torch.optim.Optimizer, loop: LoopConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / loop.warmup_steps) if loop.warmup_steps else 1.0
        return warm * lr_factor(step / max(total_steps, 1), schedule=loop.schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _seed_step(loop: LoopConfig, epoch: int, step: int, rank: int) -> np.random.Generator:
    """Every step's randomness (torch's dropout, numpy's clicks) from (seed, epoch, step, rank):
    a resumed run repeats an uninterrupted one without replaying any generator."""
    seq = np.random.SeedSequence([loop.seed, epoch, step, rank])
    torch.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
    return np.random.default_rng(seq)


@contextlib.contextmanager
def _determinism(on: bool):
    """``deterministic``: PyTorch's deterministic kernels where it has them (a warning names
    the ops without one, such as CUDA's trilinear upsampling backward), no cuDNN autotuning;
    the global settings are restored afterwards."""
    if not on:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def _backward_scope(called: nn.Module, last_micro: bool):
    """DDP all-reduces at the last micro-batch of an accumulation only."""
    if isinstance(called, nn.parallel.DistributedDataParallel) and not last_micro:
        return called.no_sync()
    return contextlib.nullcontext()


class _Optimizing(NamedTuple):
    """What one process steps, built once by :func:`fit`."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    called: nn.Module  # the module the step calls (the DDP wrapper under sync "ddp")


def fit(
    task: Task, *, loop: LoopConfig, run: RunOptions, device: torch.device | str = "auto"
) -> list[dict]:
    """Train ``task.model`` for ``loop.epochs`` (resuming from ``run.run_dir`` if asked).

    Returns the per-epoch history ``[{"epoch", "loss", "lr", "skipped", "seconds",
    **validation}]``; each entry is also appended to ``run.run_dir/metrics.jsonl``.
    """
    ctx = dist_utils.init_distributed(device=device)
    model = task.model.to(ctx.device)
    # JSON round trip: tuples become lists, so a saved config compares equal to a rebuilt one
    config = json.loads(json.dumps({"trainer": task.config, "loop": asdict(loop)}))
    optimizer = task.optimizer.build()
    steps_per_epoch = _steps_per_epoch(task, loop, ctx)
    scheduler = _scheduler(optimizer, loop, loop.epochs * steps_per_epoch)
    start, history = 0, []
    if run.resume:
        start, history = resume(
            run.run_dir, model=model, optimizer=optimizer, scheduler=scheduler,
            extra=task.extra_state, config=config, defaults=LOOP_DEFAULTS,
        )  # fmt: skip
    called = task.called or model
    if task.sync == "ddp":
        called = dist_utils.wrap_model(
            called, ctx, find_unused_parameters=task.find_unused_parameters
        )
    opt = _Optimizing(optimizer, scheduler, called)
    for epoch in range(start, loop.epochs):
        model.train()
        if isinstance(task.data, EpochDataset):
            task.data.set_epoch(epoch)
        began = time.perf_counter()
        with _determinism(loop.deterministic):
            losses, skipped = _run_epoch(task, opt, loop, ctx, epoch, run)
        dist_utils.broadcast_buffers(model, ctx)
        entry = _epoch_entry(epoch, losses, skipped, optimizer, time.perf_counter() - began)
        if task.validate is not None and ctx.is_main:
            entry.update(task.validate(model))
            model.train()
        history.append(entry)
        if ctx.is_main:
            _save_epoch(
                run.run_dir, task, opt, epoch, (epoch + 1) * steps_per_epoch, config, history
            )
            log_epoch(run.run_dir, entry, run.keep_checkpoints)
        dist_utils.barrier(ctx)
    model.eval()
    return history


def _save_epoch(
    run_dir: Path, task: Task, opt: _Optimizing, epoch: int, step: int, config, history
):
    """The atomic end-of-epoch checkpoint: model, optimizer, scheduler, extra state, RNGs."""
    save_training_state(
        checkpoint_path(run_dir, epoch),
        model=task.model,
        optimizer=opt.optimizer,
        epoch=epoch,
        step=step,
        config=config,
        extra={
            "history": history,
            "scheduler": opt.scheduler.state_dict(),
            **{k: v.state_dict() for k, v in task.extra_state.items()},
        },
    )


def _epoch_entry(epoch: int, losses: list[float], skipped: int, optimizer, seconds: float) -> dict:
    return {
        "epoch": epoch,
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "lr": [g["lr"] for g in optimizer.param_groups],
        "skipped": skipped,
        "seconds": round(seconds, 2),
    }


def _steps_per_epoch(task: Task, loop: LoopConfig, ctx: dist_utils.DistContext) -> int:
    """Optimizer steps per epoch (for the schedule's length)."""
    if task.batches is not None:
        n_micro = len(list(task.batches(0, ctx)))
    else:
        n = len(task.data)
        n_micro = math.ceil((n // ctx.world_size if ctx.world_size > 1 else n) / loop.batch_size)
    return math.ceil(n_micro / loop.grad_accum)


def _run_epoch(
    task: Task, opt: _Optimizing, loop: LoopConfig, ctx: dist_utils.DistContext, epoch: int,
    run: RunOptions,
) -> tuple[list[float], int]:  # fmt: skip
    """One pass over the data; returns the micro-batch losses and the skipped optimizer steps.

    Every micro-batch's loss terms and every optimizer step's gradient norm go through
    :mod:`medmoe.train.guard`: a non-finite value stops the run, or (``nonfinite="skip"``) drops
    the optimizer step it belongs to."""
    loader = _loader(task, loop, ctx, epoch)
    losses: list[float] = []
    skipped = 0
    poisoned = False  # a non-finite micro-batch in the current accumulation window
    n_micro = len(loader)
    desc = f"{run.desc} epoch {epoch + 1}/{loop.epochs}"
    shown = run.progress and ctx.is_main
    bar = tqdm(loader, desc=desc, disable=not shown, leave=False)
    opt.optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        rng = _seed_step(loop, epoch, i, ctx.rank)
        sctx = StepContext(epoch=epoch, step=i, device=ctx.device, rng=rng, dist=ctx,
                           module=opt.called)  # fmt: skip
        last_micro = (i + 1) % loop.grad_accum == 0 or i + 1 == n_micro
        with _backward_scope(opt.called, last_micro):
            with autocast(ctx.device, precision=loop.precision):
                loss, terms = guard.split_terms(task.step(batch, sctx))
            value = float(loss.detach())  # the one host sync per micro-batch
            # a finite sum has finite terms; the terms are inspected only to name a bad one
            bad = None if math.isfinite(value) else guard.first_nonfinite(terms)
            if guard.any_rank(bad is not None, ctx):
                guard.handle(
                    loop.nonfinite,
                    epoch=epoch,
                    step=i,
                    bad=bad or ("loss on another rank", math.nan),
                    run_dir=run.run_dir,
                )
                poisoned = True
            else:
                (loss.float() / loop.grad_accum).backward()  # outside autocast
                losses.append(value)
        if not last_micro:
            continue
        if not isinstance(opt.called, nn.parallel.DistributedDataParallel):
            dist_utils.all_reduce_grads(task.model, ctx)
        if not poisoned and task.before_optimizer_step is not None:
            task.before_optimizer_step(batch)
        norm = guard.grad_norm(task.model, loop.grad_clip)
        if not poisoned and not math.isfinite(norm):
            guard.handle(
                loop.nonfinite,
                epoch=epoch,
                step=i,
                bad=("gradient norm", norm),
                run_dir=run.run_dir,
            )
            poisoned = True
        if poisoned:
            skipped += 1
        else:
            opt.optimizer.step()
        opt.scheduler.step()  # a skipped step still advances the schedule: the run keeps its length
        opt.optimizer.zero_grad(set_to_none=True)
        poisoned = False
        if shown and losses:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", skipped=skipped)
    return losses, skipped
