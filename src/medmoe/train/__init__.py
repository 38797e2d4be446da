"""The training engine shared by every trainer (:func:`fit`), with DDP setup, AMP and atomic
checkpoints with resume."""

from medmoe.train.amp import autocast
from medmoe.train.checkpoint import (
    TrainingState,
    latest_checkpoint,
    load_training_state,
    save_training_state,
)
from medmoe.train.distributed import (
    DistContext,
    all_reduce_grads,
    cleanup,
    init_distributed,
    wrap_model,
)
from medmoe.train.engine import (
    LoopConfig,
    OptimizerSpec,
    RunOptions,
    StepContext,
    Task,
    fit,
    identity_collate,
)

__all__ = [
    "LoopConfig",
    "OptimizerSpec",
    "RunOptions",
    "StepContext",
    "Task",
    "fit",
    "identity_collate",
    "DistContext",
    "TrainingState",
    "all_reduce_grads",
    "autocast",
    "cleanup",
    "init_distributed",
    "latest_checkpoint",
    "load_training_state",
    "save_training_state",
    "wrap_model",
]
