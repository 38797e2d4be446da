"""A task head: E experts and a gate that reads pooled backbone features; sparse dispatch.

With top-p routing only the selected experts run, per sample: the batch is grouped by the set of
experts each sample uses and every expert runs once on the samples that selected it, so the cost
falls with the number of experts used (the reference implementation ran all of them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from medmoe.multitask.model.routing import route_weights


class HeadOutput(NamedTuple):
    output: Tensor  # weighted sum of the selected experts' outputs
    probs: Tensor  # (B, E) gate probabilities
    mask: Tensor  # (B, E) which experts ran
    experts: Tensor | None = None  # (B, E, ...) each expert's own output (dense routing only)


class TaskHead(nn.Module):
    def __init__(self, *, experts: list[nn.Module], gate_in: int) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.gate = nn.Linear(gate_in, len(experts))

    def forward(
        self,
        low: Tensor,
        high: Tensor,
        pooled: Tensor,
        *,
        dense: bool,
        p: float = 0.5,
        renormalize: bool = True,
    ) -> HeadOutput:
        probs = self.gate(pooled).softmax(dim=-1)
        weights, mask = route_weights(probs, dense=dense, p=p, renormalize=renormalize)
        if dense:
            outs = torch.stack([e(low, high) for e in self.experts], dim=1)  # (B, E, ...)
            w = weights.reshape(*weights.shape, *([1] * (outs.ndim - 2)))
            return HeadOutput((w * outs).sum(dim=1), probs, mask, outs)
        return HeadOutput(self.sparse(low, high, weights, mask), probs, mask)

    def sparse(self, low: Tensor, high: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
        """Each expert runs once, on the samples that selected it; outputs are scattered back."""
        out = None
        for e, expert in enumerate(self.experts):
            rows = mask[:, e].nonzero()[:, 0]
            if rows.numel() == 0:
                continue
            y = expert(low[rows], high[rows])
            y = y * weights[rows, e].reshape(-1, *([1] * (y.ndim - 1)))
            if out is None:
                out = y.new_zeros((low.shape[0], *y.shape[1:]))
            out = out.index_add(0, rows, y)
        return out
