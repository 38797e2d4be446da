"""The backbone gradient balancer, against hand-computed factors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medmoe.multitask.training.balance import GradBalancer, balance_scale


def test_balance_scale_by_hand():
    # mean of (30, 2) is 16: seg is scaled up 8x, cls down to 16/30
    assert balance_scale({"cls": 30.0, "seg": 2.0}, "seg") == pytest.approx(8.0)
    assert balance_scale({"cls": 30.0, "seg": 2.0}, "cls") == pytest.approx(16 / 30)
    assert balance_scale({"cls": 0.0, "seg": 2.0}, "cls") == 1.0


def _set_grad(p: nn.Parameter, norm: float) -> None:
    p.grad = torch.zeros_like(p)
    p.grad[0] = norm  # a gradient of exactly this norm


def test_balancer_rescales_only_once_every_kind_is_seen():
    p = nn.Parameter(torch.zeros(4))
    b = GradBalancer(params=[p], kinds=("cls", "seg"), decay=0.9)
    _set_grad(p, 3.0)
    assert b("cls") == 1.0 and p.grad.norm() == pytest.approx(3.0)  # seg not seen yet
    _set_grad(p, 4.0)
    assert b("seg") == pytest.approx(3.5 / 4.0)  # ema {cls: 3, seg: 4}
    assert p.grad.norm() == pytest.approx(3.5)
    _set_grad(p, 1.0)  # ema cls = 0.9 * 3 + 0.1 * 1 = 2.8; mean (2.8 + 4) / 2 = 3.4
    assert b("cls") == pytest.approx(3.4 / 2.8)
    assert p.grad.norm() == pytest.approx(3.4 / 2.8)
    restored = GradBalancer(params=[p], kinds=("cls", "seg"))
    restored.load_state_dict(b.state_dict())
    assert restored.ema == pytest.approx({"cls": 2.8, "seg": 4.0})


def test_single_kind_models_are_left_alone():
    p = nn.Parameter(torch.zeros(4))
    b = GradBalancer(params=[p], kinds=())
    _set_grad(p, 5.0)
    assert not b.active and b("seg") == 1.0 and p.grad.norm() == pytest.approx(5.0)
