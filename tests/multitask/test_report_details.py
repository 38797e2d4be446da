"""The fundus report's lesion, confusion and usage tables, its figures and the cost counts."""

from __future__ import annotations

import pytest
import torch

from medmoe.multitask.data.splits import synthetic_split
from medmoe.multitask.evaluation.cost import model_cost
from medmoe.multitask.evaluation.figures import (
    lesion_figure,
    native_predictions,
    richest,
    usage_figure,
)
from medmoe.multitask.evaluation.report import confusion_lines, lesion_table, usage_lines
from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE

SIZE = (32, 48)


def test_lesion_table_layout():
    ev = {
        "metrics": {"MA_dice": 0.1, "MA_dice_tuned": 0.2, "MA_dice_per_image": 0.3, "MA_aupr": 0.4},
        "thresholds": {"MA": 0.25},
    }
    lines = lesion_table({"MoE": ev, "cls": {"metrics": {"dr_acc": 0.5}}}, lesions=("MA", "HE"))
    assert lines[2] == "| MoE | MA | 0.25 | 0.100 | 0.200 | 0.300 | 0.400 |"
    assert len(lines) == 3  # no HE metrics, no lesion row for the classifier


def test_confusion_and_usage_lines():
    assert confusion_lines("dme", [[1, 0], [2, 3]]) == [
        "| dme true \\ predicted | 0 | 1 |",
        "|---|---|---|",
        "| 0 | 1 | 0 |",
        "| 1 | 2 | 3 |",
    ]
    lines = usage_lines(
        "MoE",
        {"dr": {"share": [0.5, 0.5, 0.0]}},
        {"dr": [1.0, 0.0, 0.0], "seg": [0.4, 0.6, 0.0], "dme": [1.0]},
    )
    assert lines == [
        "- MoE, dr: test 1.00/0.00/0.00 (collapsed); last training epoch 0.50/0.50/0.00",
        "- MoE, seg: test 0.40/0.60/0.00",
    ]  # one expert (dme): nothing to show


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultiTaskMoE(config=MultiTaskConfig(backbone_width=4, head_width=8, image_size=SIZE))


def test_cost_counts(model):
    images = torch.rand(2, 3, *SIZE)
    c = model_cost(model, images, repeats=1)
    assert c["backbone_flops"] < c["top_p_flops"] <= c["dense_flops"]
    assert c["whole_ratio_flops"] == pytest.approx(c["top_p_flops"] / c["dense_flops"])
    heads = (c["top_p_flops"] - c["backbone_flops"]) / (c["dense_flops"] - c["backbone_flops"])
    assert c["heads_ratio_flops"] == pytest.approx(heads)
    assert 1.0 <= c["experts_kept"] <= 3.0
    with torch.no_grad():  # dense runs all 3 experts: its heads cost 3x one expert's at 1 kept
        out = model(images, dense=False)
    if all(int(o.mask.sum()) == 2 for o in out.values()):  # one expert per image, every task
        assert c["heads_ratio_flops"] == pytest.approx(1 / 3, rel=0.05)


def test_figures_are_written(model, tmp_path):
    data = synthetic_split(split="test", seed=0, n_cls=0, n_seg=3, size=SIZE)
    idx = richest(data.segmentation, 2)
    kinds = [int(data.segmentation.native_masks(i).any(axis=(1, 2)).sum()) for i in range(3)]
    assert kinds[idx[0]] == max(kinds) and len(set(idx)) == 2
    prob, masks = native_predictions(model, data.segmentation, idx[0], {"MA": 0.0})
    assert prob.shape == masks.shape == (5, *SIZE) and masks[0].all()  # threshold 0: all in
    path = lesion_figure(
        model, data.segmentation, indices=idx, thresholds={}, path=tmp_path / "l.png", title="t"
    )
    assert path.stat().st_size > 1000
    history = [{"epoch": e, "usage": {"dr": {"share": [1.0, 0.0, 0.0]}}} for e in range(2)]
    assert usage_figure(history, tmp_path / "u.png", "t").stat().st_size > 1000
