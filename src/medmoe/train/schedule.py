"""Learning-rate schedules as pure functions of training progress (resume-safe: no state)."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(progress: float, *, schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate at ``progress`` in [0, 1] of the run."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {SCHEDULES}")
