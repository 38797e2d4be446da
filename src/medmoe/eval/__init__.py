"""The interactive evaluation protocol: click simulation, metrics, the click loop."""

from medmoe.eval.clicks import Click, box_from_mask, first_click, next_click
from medmoe.eval.metrics import dice, hd95, nsd
from medmoe.eval.protocol import evaluate_targets, format_table, run_clicks, summarize

__all__ = [
    "Click",
    "box_from_mask",
    "dice",
    "evaluate_targets",
    "first_click",
    "format_table",
    "hd95",
    "next_click",
    "nsd",
    "run_clicks",
    "summarize",
]
