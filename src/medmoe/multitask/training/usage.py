"""Expert usage per task during training: which experts the samples route to, and collapse.

Per task and epoch: ``share[e]``, the fraction of samples whose routing kept expert e; ``kept``,
the mean number of experts kept per sample; ``gate[e]``, the mean gate probability of expert e.
During the dense warm-up every share is 1 (all experts run) and ``gate`` is the informative part.
Under top-p, a task has **collapsed** when at most one expert takes a share of at least
``min_share`` (default 5 %): the other experts are trained by almost no sample, and a report that
showed only accuracy would not reveal it.

The counts stay on the device during the epoch (no host sync per step) and are read once, after
the epoch, on the main process; under ``torchrun`` they describe the main process's samples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

log = logging.getLogger(__name__)
MIN_SHARE = 0.05


def collapsed(share: Sequence[float], *, min_share: float = MIN_SHARE) -> bool:
    """True when there are several experts and at most one has ``share >= min_share``."""
    return len(share) > 1 and sum(s >= min_share for s in share) <= 1


def format_usage(usage: dict[str, dict]) -> str:
    """One line: ``dr 0.95/0.05/0.00 (kept 1.00); ...`` (shares of samples per expert)."""
    return "; ".join(
        f"{t} " + "/".join(f"{s:.2f}" for s in u["share"]) + f" (kept {u['kept']:.2f})"
        for t, u in usage.items()
    )


class UsageMeter:
    """Accumulates one epoch's routing per task; :meth:`pop` summarises it and starts over."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}  # task -> (3, E): samples, kept per expert, probs
        self._epoch = -1

    @torch.no_grad()
    def update(self, task: str, probs: Tensor, mask: Tensor, *, epoch: int) -> None:
        """``probs``/``mask`` ``(B, E)``: one batch's gate probabilities and kept experts."""
        rows = torch.stack(
            [
                torch.full_like(probs[0], probs.shape[0], dtype=torch.float32),
                mask.float().sum(0),
                probs.detach().float().sum(0),
            ]
        )
        self._sums[task] = self._sums[task] + rows if task in self._sums else rows
        self._epoch = epoch

    def pop(self) -> dict:
        """``{"usage": {task: {"share", "kept", "gate"}}, "collapsed": [tasks]}`` for the epoch
        (empty when nothing was routed); a collapse is logged as a warning."""
        usage = {}
        for task, sums in self._sums.items():
            n, kept, gate = sums.cpu().double()
            share = (kept / n).tolist()
            usage[task] = {
                "share": [round(s, 4) for s in share],
                "kept": round(float(kept.sum() / n[0]), 4),
                "gate": [round(float(g), 4) for g in gate / n],
            }
        self._sums = {}
        if not usage:
            return {}
        bad = [t for t, u in usage.items() if collapsed(u["share"])]
        for t in bad:
            log.warning(
                "fundus epoch %d: %s routing collapsed: expert shares %s (one expert takes "
                "every sample; the others are not trained)",
                self._epoch + 1,
                t,
                "/".join(f"{s:.2f}" for s in usage[t]["share"]),
            )
        return {"usage": usage, "collapsed": bad}
