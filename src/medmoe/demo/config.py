"""The demo experiment's configuration: which structures, how many crops, how long to train."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# Neuromorphometrics labels (value, name) of the two groups.
ORIGINAL_TASKS: tuple[int, ...] = (
    35,
    59,
    60,
    36,
    37,
    57,
    58,
    51,
    52,
    47,
    48,
)  # brainstem, thalami,
# caudates, putamina, lateral ventricles, hippocampi: what the general model is pretrained on
NEW_TASK: tuple[int, ...] = (
    142,
    143,
    182,
    183,
    190,
    191,
)  # middle/superior frontal, precentral gyri


@dataclass(frozen=True)
class DemoConfig:
    atlas: str = "neuromorphometrics"
    original: tuple[int, ...] = ORIGINAL_TASKS
    new: tuple[int, ...] = NEW_TASK
    new_name: str = "cortex"  # the expert's name
    train_crops: int = 6  # augmented training crops per structure
    eval_crops: int = 2  # evaluation crops per structure (seeds disjoint from training)
    elastic: bool = True
    pretrain_steps: int = 1100
    pretrain_lr: float = 1e-3
    pretrain_clicks: int = 3
    expert_epochs: int = 10
    expert_lr: float = 5e-4
    expert_clicks: int = 2
    gate_epochs: int = 8
    gate_lr: float = 1e-3  # the paper's 1e-6 suits a long GPU run, not minutes on a CPU
    eval_clicks: int = 6  # the paper's 6 points
    box_prob: float = 0.5
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


FULL = DemoConfig()
QUICK = DemoConfig(
    original=(35, 59, 51),
    new=(142, 190),
    train_crops=2,
    eval_crops=1,
    elastic=False,
    pretrain_steps=60,
    expert_epochs=2,
    gate_epochs=2,
    eval_clicks=2,
)
