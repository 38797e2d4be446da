"""The demo's statistics: the library's (:mod:`medmoe.eval.moe_stats`), over typed rows
(:class:`~medmoe.eval.moe_stats.EvalRow`). Kept as a module so that the demo reads as before."""

from __future__ import annotations

from medmoe.eval.moe_stats import (
    FORGET_DROP,
    GAIN,
    GROUPS_FRACTION,
    KEEP_CI,
    KEEP_RATIO,
    SATURATED,
    EvalRow,
    GroupCheck,
    Routing,
    aggregate,
    as_rows,
    check_lines,
    crop_scores,
    crop_value,
    paired_bootstrap,
    per_crop,
    recovered,
    routing,
)

__all__ = [
    "FORGET_DROP",
    "GAIN",
    "GROUPS_FRACTION",
    "KEEP_CI",
    "KEEP_RATIO",
    "SATURATED",
    "EvalRow",
    "GroupCheck",
    "Routing",
    "aggregate",
    "as_rows",
    "check_lines",
    "crop_scores",
    "crop_value",
    "paired_bootstrap",
    "per_crop",
    "recovered",
    "routing",
]
