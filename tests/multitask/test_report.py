"""The report's Table 1 layout and the multi-task vs single-task judgement, by hand."""

from __future__ import annotations

import pytest

from medmoe.multitask.evaluation.report import (
    comparison,
    mean_std,
    merge_baselines,
    table1,
    verdict_counts,
)


def test_table1_layout():
    rows = {
        "MoE": {"dr_acc": 0.5, "dme_acc": 0.75, "MA_iou": 0.1, "MA_dice": 0.2, "MA_aupr": 0.3},
        "seg": {"MA_iou": (0.1, 0.02), "MA_dice": (0.2, 0.01), "dr_kappa": 0.4},
    }
    lines = table1(rows, lesions=("MA",))
    assert lines[0] == "| Model | RG acc | MER acc | MA IoU / Dice | RG κ | MER κ | MA AUPR |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| MoE | 0.500 | 0.750 | 0.100 / 0.200 | — | — | 0.300 |"
    assert lines[3] == "| seg | — | — | 0.100 ± 0.020 / 0.200 ± 0.010 | 0.400 | — | — |"


def test_mean_std_by_hand():
    agg = mean_std([{"a": 1.0, "u": {"x": 1}}, {"a": 2.0}, {"a": 6.0}])
    assert agg == {"a": (3.0, pytest.approx(((4 + 1 + 9) / 2) ** 0.5))}  # sample std, ddof 1


def test_comparison_pass_miss_and_noise():
    moe = {"dr_acc": (0.60, 0.01), "dme_acc": (0.80, 0.10), "MA_aupr": (float("nan"), 0.0)}
    base = {"dr_acc": (0.70, 0.02), "dme_acc": (0.82, 0.01), "MA_aupr": (0.1, 0.0)}
    lines = comparison(moe, base)
    assert lines[0].startswith("dr_acc: MoE 0.600 ± 0.010 vs single-task 0.700 ± 0.020 (-0.100")
    assert "MISS; gap larger than both stds" in lines[0]
    assert "(-0.020; within 5 points: PASS; std larger than the gap)" in lines[1]
    assert "undefined" in lines[2]
    assert verdict_counts(lines) == "1 PASS, 1 MISS of 2 metrics"
    single = comparison({"OD_dice": 0.90}, {"OD_dice": 0.95})  # exactly 5 points below passes
    assert single == ["OD_dice: MoE 0.900 vs single-task 0.950 (-0.050; within 5 points: PASS)"]


def test_merge_baselines():
    res = {"moe": {"dr_acc": 1.0}, "cls": {"dr_acc": 0.5}, "seg": {"OD_dice": 0.9}}
    assert merge_baselines(res, "moe") == {"dr_acc": 0.5, "OD_dice": 0.9}
