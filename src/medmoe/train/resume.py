"""Resuming a run: the saved configuration must match the new one, except for what a resume may
change (:data:`RESUMABLE`); then the model, optimizer, scheduler and extra state are restored
from the newest epoch checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from medmoe.errors import InputError
from medmoe.train.checkpoint import latest_checkpoint, load_training_state

# settings a resume may change: ``epochs`` (extending a finished run), ``nonfinite`` (resuming a
# run that stopped at a NaN with skipping switched on), and how it runs without changing what it
# computes (``workers``: every sample is seeded by its index; ``deterministic``)
RESUMABLE = ("epochs", "nonfinite", "workers", "deterministic")


def _flat(config: Mapping, prefix: str = "") -> dict:
    """Nested settings as dotted keys (``trainer.pretrain.epochs``), so that a refusal names the
    one setting that differs and :data:`RESUMABLE` applies at any depth."""
    out = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume(saved: Mapping, config: Mapping, path: Path, defaults: Mapping = {}) -> None:  # noqa: B006 (read only)
    """Refuse a checkpoint written with another configuration, except for :data:`RESUMABLE`.

    ``defaults``: flat keys (``"loop.precision"``) added after a checkpoint was written; a saved
    config without one counts as having its default, so old runs still resume."""
    saved, config = {**defaults, **_flat(saved)}, _flat(config)
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


def resume(
    run_dir: Path,
    *,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    extra: Mapping[str, Any],
    config: dict,
    defaults: Mapping = {},  # noqa: B006 (read only)
) -> tuple[int, list[dict]]:
    """Restore the newest checkpoint in ``run_dir``; returns ``(first epoch to run, history)``
    (``(0, [])`` when there is none)."""
    last = latest_checkpoint(run_dir)
    if last is None:
        return 0, []
    state = load_training_state(
        last,
        model=model,
        optimizer=optimizer,
        check_config=lambda saved: check_resume(saved, config, last, defaults),
    )
    scheduler.load_state_dict(state.extra["scheduler"])
    for name, obj in extra.items():
        obj.load_state_dict(state.extra.get(name, {}))
    return state.epoch + 1, list(state.extra.get("history", []))
