"""The configs of expert finetuning and gate training (:mod:`medmoe.moe.train`): frozen, checked
at construction, saved as plain dicts (``dataclasses.asdict``) in every checkpoint and artifact."""

from __future__ import annotations

from dataclasses import dataclass, field

from medmoe.errors import InputError

TAU_GRID = tuple(round(0.05 * i, 2) for i in range(20))


@dataclass(frozen=True)
class ExpertTrainConfig:
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 4  # crops per optimizer step (per process)
    clicks: int = 3  # click iterations per crop, each adding to the loss
    box_prob: float = 0.5  # fraction of crops prompted by a box (the model must be box-capable)
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class MoETrainConfig:
    epochs: int = 10
    lr_gate: float = 1e-6  # the paper's values
    lr_expert: float = 1e-4
    weight_decay: float = 1e-4
    update_top1_expert: bool = False  # the paper updates the top-1 expert; default: frozen
    ce_weight: float = 1.0
    batch_size: int = 4
    clicks: int = 1
    box_prob: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    tau: float | None = None  # None: choose automatically on the validation split
    tau_grid: tuple[float, ...] = TAU_GRID
    weighting: str = "s_top"
    gate: dict = field(default_factory=dict)  # GateConfig overrides (num_heads, mlp_dim, ...)
    # Epochs of gate cross-entropy on first prompts alone, before the click loop (0: none, the
    # paper's schedule; medmoe.moe.warmup). Same learning rate and batch size.
    warmup_epochs: int = 0
    balance_classes: bool = False  # weigh the gate's cross-entropy by inverse class frequency

    def __post_init__(self) -> None:
        _check_common(self)
        if self.tau is not None and not 0.0 <= self.tau < 1.0:
            raise InputError(f"tau must be in [0, 1), got {self.tau}")
        if self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


def _check_common(cfg) -> None:
    lrs = [getattr(cfg, n) for n in ("lr", "lr_gate", "lr_expert") if hasattr(cfg, n)]
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.clicks < 1:
        raise InputError("epochs, batch size and clicks must be >= 1")
    if any(not lr > 0 for lr in lrs) or cfg.weight_decay < 0:
        raise InputError(f"learning rates must be > 0 and weight decay >= 0, got {lrs}")
    if not 0.0 <= cfg.box_prob <= 1.0 or not 0.0 <= cfg.val_fraction < 1.0:
        raise InputError("box_prob must be in [0, 1] and val_fraction in [0, 1)")
