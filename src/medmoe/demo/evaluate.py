"""The demo's evaluation: the library's Table 1 / Table 2 evaluator
(:mod:`medmoe.eval.moe_methods`) on the demo's crops, with rows in their JSON form (the
``eval_<subject>.json`` cache of a run). The methods, the click protocol and the rows are the
library's; this module only adapts them to the demo's run."""

from __future__ import annotations

from medmoe.demo.crops import Crop
from medmoe.eval.moe_methods import (
    TABLE1,
    WEIGHTINGS,
    Decoded,
    Methods,
    Trajectory,
    click_loop,
    evaluate_crop,
    fast_dice,
    method_table,
    prompt_key,
)
from medmoe.eval.moe_methods import evaluate as evaluate_rows
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import fuse, logit_softmax

__all__ = [
    "TABLE1",
    "WEIGHTINGS",
    "Decoded",
    "Methods",
    "Trajectory",
    "click_loop",
    "evaluate",
    "evaluate_crop",
    "fast_dice",
    "fuse",
    "logit_softmax",
    "method_table",
    "prompt_key",
]


def evaluate(
    moe: MoESam3D,
    crops: list[Crop],
    *,
    groups: int,
    taus,
    clicks: int,
    seed: int,
    nsd_mm: float = 2.0,
    desc: str = "evaluate",
) -> list[dict]:
    """The library's rows for every crop, as JSON dicts (see :class:`medmoe.eval.moe_stats.EvalRow`)."""
    rows = evaluate_rows(
        moe, crops, groups=groups, taus=taus, clicks=clicks, seed=seed, nsd_mm=nsd_mm, desc=desc
    )
    return [r.to_dict() for r in rows]
