"""Training that cannot fail silently: every step's loss terms and gradient norm are checked.

A step returns its loss as one tensor, or as named terms (``{"dice_ce": ..., "gate_ce": ...}``)
that the engine sums; a non-finite term is named in the error. What happens at the first
non-finite value is the loop's ``nonfinite`` setting:

- ``"stop"`` (default): :class:`NonFiniteError`, one line naming the epoch, the step and the term.
  The epoch is not saved, so the run folder keeps the last good checkpoint and ``--resume``
  starts from it.
- ``"skip"``: the optimizer step is dropped (gradients zeroed; the schedule still advances) and
  the skip is counted in the epoch's metrics.

Under torchrun the decision is taken by all ranks together, so a skip never desynchronises them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from medmoe.errors import MedmoeError
from medmoe.train import distributed as dist_utils

NONFINITE = ("stop", "skip")


class NonFiniteError(MedmoeError, FloatingPointError):
    """A loss term or the gradient norm became NaN or infinite."""


def split_terms(out: Tensor | Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """A step's output as ``(total loss, named terms)``; a bare tensor is the one term ``loss``."""
    if isinstance(out, Mapping):
        if not out:
            raise ValueError("a step returned no loss terms")
        terms = dict(out)
        return sum(terms.values()), terms  # type: ignore[return-value]
    return out, {"loss": out}


def first_nonfinite(terms: Mapping[str, Tensor]) -> tuple[str, float]:
    """The first term (in the step's order) that is not finite, with its value (called once
    the total is known to be non-finite)."""
    for name, value in terms.items():
        v = float(value.detach().float().sum())
        if not math.isfinite(v):
            return name, v
    return "loss", math.nan  # only called for a non-finite total: its terms overflowed together


def any_rank(flag: bool, ctx: dist_utils.DistContext) -> bool:
    """True when ``flag`` holds on any rank (one all-reduce under torchrun)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def grad_norm(model: torch.nn.Module, clip: float | None) -> float:
    """The total gradient norm (clipped to ``clip`` when given), as a float."""
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf))


def handle(policy: str, *, epoch: int, step: int, bad: tuple[str, float], run_dir) -> None:
    """Raise under ``"stop"``; return (the caller skips the step) under ``"skip"``."""
    if policy == "stop":
        what, value = bad
        raise NonFiniteError(
            describe(epoch=epoch, step=step, what=what, value=value, run_dir=run_dir)
        )


def describe(*, epoch: int, step: int, what: str, value: float, run_dir) -> str:
    return (
        f"non-finite {what} ({value}) at epoch {epoch + 1}, step {step + 1}: training stopped; "
        f"the last good checkpoint stays in {run_dir} (resume from it with other settings, "
        "or pass the option that skips non-finite steps)"
    )
