"""Helpers for SAM-Med3D tests: random weights that expose bias bugs."""

from __future__ import annotations

import torch
from torch import nn


def randomize_(module: nn.Module, *, std: float = 0.2, seed: int = 0) -> nn.Module:
    """Fill every parameter (biases and relative-position tables included) with N(0, std).

    Zero-initialised rel-pos tables and qkv biases would hide bias bugs, so nothing stays zero.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    return module
