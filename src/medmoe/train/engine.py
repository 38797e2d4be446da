"""The one training loop every medmoe trainer runs on.

Read it top to bottom like nanoGPT's ``train.py``: set up the process (torchrun or not), build the
data loader and the optimizer, resume, then for each epoch and step: seed, forward under
autocast, backward outside it, (accumulate,) clip, step, schedule; write an atomic checkpoint at
every epoch end. What differs between trainers is a :class:`Step`: a callable that turns one
batch into a scalar loss (the interactive click loss for SAM-Med3D, alternating
classification/segmentation batches for fundus), with an optional hook run just before the
optimizer step. It is deliberately not a framework: a trainer that needs something else writes
its own ~20 lines around :func:`fit`.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from medmoe.errors import InputError
from medmoe.train import distributed as dist_utils
from medmoe.train import guard
from medmoe.train.amp import autocast
from medmoe.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    log_epoch,
    save_training_state,
)
from medmoe.train.schedule import SCHEDULES, lr_factor


@dataclass(frozen=True)
class LoopConfig:
    """How the loop runs; saved (with the trainer's own config) in every checkpoint."""

    epochs: int  # passes over the training set
    batch_size: int = 1  # samples per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    schedule: str = "constant"  # learning-rate factor over the run: constant | cosine
    warmup_steps: int = 0  # linear warm-up, in optimizer steps
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    seed: int = 0
    workers: int | None = None  # DataLoader workers; None: 4 on CUDA, 0 on CPU
    nonfinite: str = "stop"  # at a NaN/inf loss term or gradient norm: stop | skip (the step)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise InputError(
                f"epochs must be >= 0, batch size and grad_accum >= 1 "
                f"(got {self.epochs}, {self.batch_size}, {self.grad_accum})"
            )
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown learning-rate schedule {self.schedule!r}; use {SCHEDULES}")
        if self.nonfinite not in guard.NONFINITE:
            raise InputError(f"nonfinite must be one of {guard.NONFINITE}, got {self.nonfinite!r}")


@dataclass(frozen=True)
class StepContext:
    """What a step may need besides its batch."""

    epoch: int
    step: int  # micro-batch index within the epoch
    device: torch.device
    rng: np.random.Generator  # seeded by (seed, epoch, step, rank): click simulation etc.
    dist: dist_utils.DistContext


class Step(Protocol):
    """One micro-batch to a scalar loss, or to named scalar terms that the engine sums and checks
    one by one (called under autocast; the engine back-propagates)."""

    def __call__(self, batch: Any, ctx: StepContext) -> Tensor | Mapping[str, Tensor]: ...


@runtime_checkable
class EpochDataset(Protocol):
    """A dataset whose samples depend on the epoch (on-the-fly augmentation): the engine calls
    ``set_epoch`` before each epoch's loader is built, as for a ``DistributedSampler``."""

    def set_epoch(self, epoch: int) -> None: ...


BatchSamplerFactory = Callable[[int, dist_utils.DistContext], Iterable[list[int]]]


def identity_collate(items: list) -> list:
    """Keep a batch as the list of its samples (steps that loop over crops of varying prompts)."""
    return items


def _loader(
    dataset: Dataset,
    loop: LoopConfig,
    ctx: dist_utils.DistContext,
    epoch: int,
    *,
    collate: Callable | None,
    batches: BatchSamplerFactory | None,
) -> DataLoader:
    """Shuffled by (seed, epoch); each rank takes its share (``DistributedSampler``), equal
    step counts on every rank (``drop_last``)."""
    workers = loop.workers if loop.workers is not None else (4 if ctx.device.type == "cuda" else 0)
    common = {
        "num_workers": workers,
        "pin_memory": ctx.device.type == "cuda",
        "collate_fn": collate,
        "persistent_workers": False,
    }
    if batches is not None:
        return DataLoader(dataset, batch_sampler=list(batches(epoch, ctx)), **common)
    if len(dataset) < ctx.world_size:
        raise InputError(
            f"{len(dataset)} training samples cannot be split over {ctx.world_size} processes"
        )
    sampler = DistributedSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=loop.seed,
        drop_last=ctx.world_size > 1,
    )
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=loop.batch_size, sampler=sampler, **common)


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


def _flat(config: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and k in ("trainer", "loop"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# settings a resume may change: ``epochs`` (extending a finished run) and ``nonfinite`` (resuming
# a run that stopped at a NaN with skipping switched on)
RESUMABLE = ("epochs", "nonfinite")


def _check_resume(saved: Mapping, config: Mapping, path: Path) -> None:
    """Refuse a checkpoint written with another configuration, except for :data:`RESUMABLE`."""
    saved, config = _flat(saved), _flat(config)
    keys = sorted(
        k
        for k in set(saved) | set(config)
        if saved.get(k) != config.get(k) and k.rsplit(".", 1)[-1] not in RESUMABLE
    )
    if not keys:
        return
    shown = ", ".join(f"{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in keys[:3])
    raise InputError(
        f"cannot resume from {path}: it was written with another configuration ({shown}); "
        "use the same options or another output folder"
    )


def _resume(
    run_dir: Path, modules: dict[str, Any], config: dict, enabled: bool
) -> tuple[int, list[dict]]:
    last = latest_checkpoint(run_dir) if enabled else None
    if last is None:
        return 0, []
    state = load_training_state(
        last,
        model=modules["model"],
        optimizer=modules["optimizer"],
        check_config=lambda saved: _check_resume(saved, config, last),
    )
    modules["scheduler"].load_state_dict(state.extra["scheduler"])
    for name, obj in modules["extra"].items():
        obj.load_state_dict(state.extra.get(name, {}))
    return state.epoch + 1, list(state.extra.get("history", []))


def _backward_scope(wrapped: nn.Module, last_micro: bool):
    """DDP all-reduces at the last micro-batch of an accumulation only."""
    if isinstance(wrapped, nn.parallel.DistributedDataParallel) and not last_micro:
        return wrapped.no_sync()
    return contextlib.nullcontext()


def fit(
    *,
    model: nn.Module,
    param_groups: list[dict],
    step: Step,
    dataset: Dataset,
    loop: LoopConfig,
    run_dir: str | os.PathLike,
    config: dict,
    device: torch.device | str = "auto",
    ddp_module: nn.Module | None = None,
    sync: str = "ddp",
    find_unused_parameters: bool = False,
    before_optimizer_step: Callable[[Any], None] | None = None,
    collate: Callable | None = None,
    batches: BatchSamplerFactory | None = None,
    extra_state: Mapping[str, Any] | None = None,
    weight_decay: float = 0.0,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    keep_checkpoints: int | None = None,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
) -> list[dict]:
    """Train ``model`` (every trainable parameter lives in it; it is what checkpoints hold).

    ``sync`` says how gradients agree across ``torchrun`` processes: ``"ddp"`` wraps
    ``ddp_module`` (default ``model``) in DDP, and the step calls the wrapped module, which it
    finds in ``step.wrapped`` if it has that attribute; ``"allreduce"`` averages the gradient of
    every trainable parameter of ``model`` once per optimizer step, for steps that run a module
    several times before one backward (the click iterations), which DDP's reducer does not allow.
    ``batches(epoch, ctx)``: a custom batch sampler (lists of dataset indices for this rank),
    instead of the default shuffled ``DistributedSampler``. ``extra_state``: objects with
    ``state_dict``/``load_state_dict`` checkpointed alongside (e.g. a gradient balancer).
    ``keep_checkpoints``: how many of the latest epoch checkpoints stay on disk (``None``: all).
    ``validate(model)``: metrics computed on the main rank after every epoch (e.g. validation
    Dice), stored in the history. Each epoch's history entry is also appended to
    ``run_dir/metrics.jsonl``. Returns the per-epoch history
    ``[{"epoch", "loss", "lr", "skipped", "seconds", **validation}]``.
    """
    if sync not in ("ddp", "allreduce"):
        raise ValueError(f"sync must be 'ddp' or 'allreduce', got {sync!r}")
    ctx = dist_utils.init_distributed(device=device)
    run_dir = Path(run_dir)
    model.to(ctx.device)
    # JSON round trip: tuples become lists, so a saved config compares equal to a rebuilt one
    full_config = json.loads(json.dumps({"trainer": config, "loop": asdict(loop)}))
    optimizer = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    steps_per_epoch = _steps_per_epoch(dataset, loop, ctx, batches)
    scheduler = _scheduler(optimizer, loop, loop.epochs * steps_per_epoch)
    extra = dict(extra_state or {})
    modules = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "extra": extra}
    start, history = _resume(run_dir, modules, full_config, resume)
    wrapped = ddp_module or model
    if sync == "ddp":
        wrapped = dist_utils.wrap_model(wrapped, ctx, find_unused_parameters=find_unused_parameters)
    if hasattr(step, "wrapped"):
        step.wrapped = wrapped
    for epoch in range(start, loop.epochs):
        model.train()
        if isinstance(dataset, EpochDataset):
            dataset.set_epoch(epoch)
        loader = _loader(dataset, loop, ctx, epoch, collate=collate, batches=batches)
        began = time.perf_counter()
        losses, skipped = _run_epoch(
            loader, step, loop, ctx, epoch, optimizer, scheduler, wrapped, model,
            before_optimizer_step, progress=progress, desc=f"{desc} epoch {epoch + 1}/{loop.epochs}",
            run_dir=run_dir,
        )  # fmt: skip
        dist_utils.broadcast_buffers(model, ctx)
        entry = _epoch_entry(epoch, losses, skipped, optimizer, time.perf_counter() - began)
        if validate is not None and ctx.is_main:
            entry.update(validate(model))
            model.train()
        history.append(entry)
        if ctx.is_main:
            _save_epoch(
                run_dir, modules, epoch, (epoch + 1) * steps_per_epoch, full_config, history
            )
            log_epoch(run_dir, entry, keep_checkpoints)
        dist_utils.barrier(ctx)
    model.eval()
    return history


def _save_epoch(run_dir: Path, modules: dict, epoch: int, step: int, config: dict, history):
    """The atomic end-of-epoch checkpoint: model, optimizer, scheduler, extra state, RNGs."""
    save_training_state(
        checkpoint_path(run_dir, epoch),
        model=modules["model"],
        optimizer=modules["optimizer"],
        epoch=epoch,
        step=step,
        config=config,
        extra={
            "history": history,
            "scheduler": modules["scheduler"].state_dict(),
            **{k: v.state_dict() for k, v in modules["extra"].items()},
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


def _steps_per_epoch(dataset, loop: LoopConfig, ctx, batches) -> int:
    """Optimizer steps per epoch (for the schedule's length)."""
    if batches is not None:
        n_micro = len(list(batches(0, ctx)))
    else:
        per_rank = len(dataset) // ctx.world_size if ctx.world_size > 1 else len(dataset)
        n_micro = math.ceil(per_rank / loop.batch_size)
    return math.ceil(n_micro / loop.grad_accum)


def _run_epoch(
    loader, step, loop, ctx, epoch, optimizer, scheduler, wrapped, model,
    before_optimizer_step, *, progress: bool, desc: str, run_dir: Path,
) -> tuple[list[float], int]:  # fmt: skip
    """One pass over the loader; returns the micro-batch losses and the skipped optimizer steps.

    Every micro-batch's loss terms and every optimizer step's gradient norm go through
    :mod:`medmoe.train.guard`: a non-finite value stops the run, or (``nonfinite="skip"``) drops
    the optimizer step it belongs to."""
    losses: list[float] = []
    skipped = 0
    poisoned = False  # a non-finite micro-batch in the current accumulation window
    n_micro = len(loader)
    bar = tqdm(loader, desc=desc, disable=not (progress and ctx.is_main), leave=False)
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(bar):
        rng = _seed_step(loop, epoch, i, ctx.rank)
        sctx = StepContext(epoch=epoch, step=i, device=ctx.device, rng=rng, dist=ctx)
        last_micro = (i + 1) % loop.grad_accum == 0 or i + 1 == n_micro
        with _backward_scope(wrapped, last_micro):
            with autocast(ctx.device):
                loss, terms = guard.split_terms(step(batch, sctx))
            value = float(loss.detach())  # the one host sync per micro-batch
            # a finite sum has finite terms; the terms are inspected only to name a bad one
            bad = None if math.isfinite(value) else guard.first_nonfinite(terms)
            if guard.any_rank(bad is not None, ctx):
                guard.handle(
                    loop.nonfinite,
                    epoch=epoch,
                    step=i,
                    bad=bad or ("loss on another rank", math.nan),
                    run_dir=run_dir,
                )
                poisoned = True
            else:
                (loss.float() / loop.grad_accum).backward()  # outside autocast
                losses.append(value)
        if not last_micro:
            continue
        if not isinstance(wrapped, nn.parallel.DistributedDataParallel):
            dist_utils.all_reduce_grads(model, ctx)
        if not poisoned and before_optimizer_step is not None:
            before_optimizer_step(batch)
        norm = guard.grad_norm(model, loop.grad_clip)
        if not poisoned and not math.isfinite(norm):
            guard.handle(
                loop.nonfinite, epoch=epoch, step=i, bad=("gradient norm", norm), run_dir=run_dir
            )
            poisoned = True
        if poisoned:
            skipped += 1
        else:
            optimizer.step()
        scheduler.step()  # a skipped step still advances the schedule: the run keeps its length
        optimizer.zero_grad(set_to_none=True)
        poisoned = False
        if progress and ctx.is_main and losses:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", skipped=skipped)
    return losses, skipped
