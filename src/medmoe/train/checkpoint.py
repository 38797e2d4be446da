"""Training checkpoints: written atomically every epoch, read back with ``weights_only=True``.

A checkpoint holds the model and optimizer state dicts (the engine adds the scheduler's), the epoch and step counters, the resolved
config (a JSON-able dict) and the RNG states (CPU, CUDA, numpy, Python), so that a resumed run continues exactly where an
uninterrupted one would have been.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from medmoe.errors import CheckpointError, first_line
from medmoe.train.distributed import unwrap
from medmoe.utils.files import atomic_write

CHECKPOINT_PATTERN = "checkpoint_epoch{epoch:04d}.pt"


class TrainingState(NamedTuple):
    epoch: int  # epochs completed
    step: int  # optimizer steps completed
    config: dict
    extra: dict


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_training_state(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    epoch: int,
    step: int,
    config: dict,
    extra: dict | None = None,
) -> Path:
    """Atomically write a resumable checkpoint (temporary file, fsync, rename)."""
    payload = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "config": config,
        "extra": extra or {},
        "rng": _rng_state(),
    }
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_training_state(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
    check_config: Callable[[dict], None] | None = None,
) -> TrainingState:
    """Load a checkpoint written by :func:`save_training_state` into ``model``/``optimizer``.

    ``check_config`` sees the saved config first, before anything is restored, and may refuse
    the checkpoint by raising."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, truncated zips
        raise CheckpointError(f"cannot resume from {path}: {first_line(err)}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"cannot resume from {path}: not a medmoe training checkpoint")
    if check_config is not None:
        check_config(payload.get("config", {}))
    _check_keys(path, unwrap(model), payload["model"])
    try:
        unwrap(model).load_state_dict(payload["model"], strict=True)
    except Exception as err:  # unpickling refusals, truncated zips, missing keys, shape errors
        raise CheckpointError(f"cannot resume from {path}: {first_line(err)}") from None
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng and "rng" in payload:
        _set_rng_state(payload["rng"])
    return TrainingState(
        epoch=payload["epoch"],
        step=payload["step"],
        config=payload["config"],
        extra=payload["extra"],
    )


def _check_keys(path, model: nn.Module, state: dict) -> None:
    """One line naming what differs when a checkpoint holds other weights than ``model`` (say,
    a gate-training checkpoint from before frozen experts were left out of it)."""
    want, have = set(model.state_dict()), set(state)
    parts = []
    for what, keys in (("missing", sorted(want - have)), ("unexpected", sorted(have - want))):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            parts.append(f"{what} {keys[0]}{more}")
    if parts:
        raise CheckpointError(
            f"cannot resume from {path}: it holds other weights than this run trains "
            f"({'; '.join(parts)}); it was written by another version or configuration: "
            "use another output folder"
        )


def checkpoint_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINT_PATTERN.format(epoch=epoch)


def epoch_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The epoch checkpoints in ``run_dir``, oldest first (temporary files are ignored)."""
    return sorted(Path(run_dir).glob("checkpoint_epoch*.pt")) if Path(run_dir).is_dir() else []


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint of the highest epoch in ``run_dir``."""
    found = epoch_checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` latest epoch checkpoints (after the newest is written)."""
    for path in epoch_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def log_epoch(run_dir: Path, entry: dict, keep_checkpoints: int | None) -> None:
    """One JSON line per epoch in ``run_dir/metrics.jsonl`` (the loss history outside the
    checkpoints, readable while a run goes on: ``tail -f``); then old checkpoints are pruned."""
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    if keep_checkpoints:
        prune_checkpoints(run_dir, keep_checkpoints)
