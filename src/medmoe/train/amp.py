"""Mixed precision: bf16 autocast on CUDA, nothing on CPU (CPU bf16 is slower here)."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
