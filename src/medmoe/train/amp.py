"""Mixed precision: bf16 autocast on CUDA unless fp32 is asked for; nothing on CPU (CPU bf16 is
slower here)."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("bf16", "fp32")


def autocast(
    device: torch.device | str, precision: str = "bf16"
) -> contextlib.AbstractContextManager:
    """The autocast context of a training step on ``device`` at ``precision`` (``bf16`` | ``fp32``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and precision == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
