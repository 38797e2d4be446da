"""Training utilities shared by every trainer: DDP setup, AMP, atomic checkpoints with resume."""

from medmoe.train.amp import autocast
from medmoe.train.checkpoint import (
    TrainingState,
    latest_checkpoint,
    load_training_state,
    save_training_state,
)
from medmoe.train.distributed import (
    DistContext,
    all_reduce_mean,
    cleanup,
    init_distributed,
    wrap_model,
)

__all__ = [
    "DistContext",
    "TrainingState",
    "all_reduce_mean",
    "autocast",
    "cleanup",
    "init_distributed",
    "latest_checkpoint",
    "load_training_state",
    "save_training_state",
    "wrap_model",
]
