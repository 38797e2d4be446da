"""The fundus training's learning-rate schedule and per-expert supervision during warm-up."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medmoe.multitask.model.heads import TaskHead
from medmoe.multitask.training.train import supervised_loss
from medmoe.train.schedule import SCHEDULES, lr_factor


def test_cosine_schedule_by_hand():
    assert lr_factor(0.0) == 1.0
    assert lr_factor(0.5) == pytest.approx(0.5)
    assert lr_factor(0.25) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_factor(1.0) == pytest.approx(0.0)
    assert lr_factor(1.7) == pytest.approx(0.0)  # clamped past the end
    assert lr_factor(0.3, schedule="constant") == 1.0
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        lr_factor(0.3, schedule="step")


def test_cli_offers_exactly_the_schedules(capsys):
    """The CLI spells the names out (it parses before torch loads); they must not drift."""
    from medmoe.cli.main import build_parser

    args = build_parser().parse_args(["fundus", "train", "--data", "synthetic", "--out", "x"])
    assert args.lr_schedule in SCHEDULES
    for name in SCHEDULES:
        argv = ["fundus", "train", "--data", "synthetic", "--out", "x", "--lr-schedule", name]
        assert build_parser().parse_args(argv).lr_schedule == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["fundus", "train", "--data", "s", "--out", "x", "--lr-schedule", "step"]
        )
    assert "invalid choice" in capsys.readouterr().err


class Scale(nn.Module):
    """A toy expert: its output is ``k * high`` (low is unused), so each output is known."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, low, high):
        return self.k * high


def _head() -> TaskHead:
    head = TaskHead(experts=[Scale(1.0), Scale(2.0), Scale(-1.0)], gate_in=2)
    with torch.no_grad():
        head.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        head.gate.bias.zero_()
    return head


def test_dense_head_exposes_each_expert_output_and_sparse_does_not():
    head = _head()
    high = torch.randn(4, 3, 2, 2)
    pooled = torch.randn(4, 2)
    dense = head(None, high, pooled, dense=True)
    assert dense.experts.shape == (4, 3, 3, 2, 2)
    for e, k in enumerate((1.0, 2.0, -1.0)):
        torch.testing.assert_close(dense.experts[:, e], k * high)
    w = head.gate(pooled).softmax(-1)
    mix = sum(w[:, e].reshape(4, 1, 1, 1) * k * high for e, k in enumerate((1.0, 2.0, -1.0)))
    torch.testing.assert_close(dense.output, mix)
    assert head(high, high, pooled, dense=False).experts is None


def test_supervised_loss_adds_the_mean_expert_loss():
    head = _head()
    high = torch.randn(2, 5, 4, 4)  # 5 "lesion" channels at 1/4 of an 8 x 8 target
    pooled = torch.randn(2, 2)
    out = head(None, high, pooled, dense=True)
    mix = F.interpolate(out.output, size=(8, 8), mode="bilinear", align_corners=False)
    out = out._replace(output=mix)
    target = (torch.rand(2, 5, 8, 8) > 0.5).float()

    def mse(y, t):
        return ((y - t) ** 2).mean()

    up = [
        F.interpolate(k * high, size=(8, 8), mode="bilinear", align_corners=False)
        for k in (1.0, 2.0, -1.0)
    ]
    expected = mse(mix, target) + 0.5 * sum(mse(u, target) for u in up) / 3
    torch.testing.assert_close(supervised_loss(mse, out, target, expert_weight=0.5), expected)
    # weight 0, or a sparse step, is the routed output's loss alone
    torch.testing.assert_close(
        supervised_loss(mse, out, target, expert_weight=0.0), mse(mix, target)
    )
    sparse = out._replace(experts=None)
    torch.testing.assert_close(
        supervised_loss(mse, sparse, target, expert_weight=0.5), mse(mix, target)
    )
