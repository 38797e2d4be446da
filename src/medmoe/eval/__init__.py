"""Interactive evaluation: click simulation, metrics, the click loop and the CVPR 2025 protocol."""

from medmoe.eval.clicks import Click, box_from_mask, first_click, largest_error_click, next_click
from medmoe.eval.cvpr25 import evaluate_cvpr25, run_cvpr25, trapezoid_auc
from medmoe.eval.metrics import dice, hd95, nsd
from medmoe.eval.protocol import evaluate_targets, format_table, run_clicks, summarize

__all__ = [
    "Click",
    "box_from_mask",
    "dice",
    "evaluate_cvpr25",
    "evaluate_targets",
    "first_click",
    "format_table",
    "hd95",
    "largest_error_click",
    "next_click",
    "nsd",
    "run_clicks",
    "run_cvpr25",
    "summarize",
    "trapezoid_auc",
]
