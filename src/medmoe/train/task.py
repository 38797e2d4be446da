"""What a trainer hands the training engine (:func:`medmoe.train.engine.fit`).

A :class:`Task` holds the pieces of one training problem (the model, its :class:`Step`, its
data, its optimizer, its config, optional validation); a :class:`LoopConfig` says how the loop
runs and is saved with every checkpoint; :class:`RunOptions` says where the run writes;
:class:`Runtime` is the part of a loop's settings a command line picks for its machine.
:func:`click_task` is the task of a step that runs a click loop, which pretraining, expert and
gate training share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from medmoe.errors import InputError
from medmoe.train import distributed as dist_utils
from medmoe.train import guard
from medmoe.train.amp import PRECISIONS
from medmoe.train.schedule import SCHEDULES


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """How a run uses its machine; chosen on the command line, saved in the loop's config."""

    workers: int | None = None  # DataLoader workers; None: 4 on CUDA, 0 on CPU
    precision: str = "bf16"  # autocast on CUDA: bf16 | fp32 (a CPU run is float32 either way)
    deterministic: bool = False  # deterministic kernels where PyTorch has them (slower on CUDA)


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
    precision: str = "bf16"  # autocast on CUDA: bf16 | fp32 (a CPU run is float32 either way)
    deterministic: bool = False  # deterministic kernels where PyTorch has them (slower on CUDA)

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
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"workers must be >= 0, got {self.workers}")


# a checkpoint written before a loop setting existed counts as having its default
LOOP_DEFAULTS = {f"loop.{k}": v for k, v in asdict(LoopConfig(epochs=0)).items()}


@dataclass(frozen=True)
class StepContext:
    """What a step may need besides its batch."""

    epoch: int
    step: int  # micro-batch index within the epoch
    device: torch.device
    rng: np.random.Generator  # seeded by (seed, epoch, step, rank): click simulation etc.
    dist: dist_utils.DistContext
    # the module the step calls: the task's ``called`` module (DDP-wrapped under sync "ddp");
    # None only outside the engine
    module: nn.Module | None = None


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
SYNCS = ("ddp", "allreduce")


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """AdamW over ``param_groups`` (each with its own ``lr``, which the schedule scales)."""

    param_groups: list[dict]
    weight_decay: float = 0.0

    def build(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.param_groups, weight_decay=self.weight_decay)


@dataclass(frozen=True, kw_only=True)
class Task:
    """What a trainer hands the engine: the model, its step, its data and its optimizer.

    ``sync`` says how gradients agree across ``torchrun`` processes: ``"ddp"`` wraps ``called``
    in DDP; ``"allreduce"`` averages the gradient of every trainable parameter of ``model`` once
    per optimizer step, for steps that run a module several times before one backward (the click
    iterations), which DDP's reducer does not allow. Either way the step finds the module to
    call in ``StepContext.module``.
    """

    model: nn.Module  # holds every trainable parameter; what checkpoints save
    step: Step
    data: Dataset
    optimizer: OptimizerSpec
    config: Mapping[str, Any]  # the trainer's config: saved in every checkpoint, checked on resume
    called: nn.Module | None = None  # the module the step calls (default: ``model``)
    sync: str = "ddp"  # ddp | allreduce
    find_unused_parameters: bool = False  # DDP: routing may leave some experts unused
    collate: Callable | None = None  # the DataLoader's collate_fn (identity_collate: lists)
    batches: BatchSamplerFactory | None = None  # (epoch, ctx) -> this rank's index lists
    before_optimizer_step: Callable[[Any], None] | None = None  # sees the last micro-batch
    extra_state: Mapping[str, Any] = field(default_factory=dict)  # state_dict()-able, saved too
    # metrics computed on the main rank after every epoch (e.g. validation Dice), in the history
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.sync not in SYNCS:
            raise ValueError(f"sync must be one of {SYNCS}, got {self.sync!r}")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where a run writes and how it reports (none of it changes the result)."""

    run_dir: Path  # epoch checkpoints and metrics.jsonl
    resume: bool = False  # continue from the newest checkpoint in run_dir, if any
    progress: bool = True  # a progress bar on the main rank
    desc: str = "train"  # the progress bar's label
    keep_checkpoints: int | None = None  # the latest N epoch checkpoints stay; None: all


def identity_collate(items: list) -> list:
    """Keep a batch as the list of its samples (steps that loop over crops of varying prompts)."""
    return items


def click_task(
    *,
    model: nn.Module,
    step: Step,
    data: Dataset,
    config: Mapping[str, Any],
    param_groups: list[dict],
    weight_decay: float,
    called: nn.Module | None = None,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
) -> Task:
    """The task of a step that runs a click loop over each crop of a batch (pretraining, expert
    and gate training): batches stay lists of crops, and gradients are all-reduced once per
    optimizer step, since the loop runs a module several times before one backward."""
    return Task(
        model=model,
        step=step,
        data=data,
        optimizer=OptimizerSpec(param_groups=param_groups, weight_decay=weight_decay),
        config=config,
        called=called,
        sync="allreduce",
        collate=identity_collate,
        validate=validate,
    )
