from __future__ import annotations

import pytest
import torch

from medmoe.errors import InputError
from medmoe.moe import expert_weight, route, select_masks


def test_route_picks_the_best_expert_ignoring_index_0():
    probs = torch.tensor([[0.7, 0.1, 0.2], [0.1, 0.6, 0.3], [0.2, 0.4, 0.4]])
    r = route(probs, tau=0.5)
    assert r.expert.tolist() == [2, 1, 1]  # ties -> the first expert
    assert torch.allclose(r.s_top, torch.tensor([0.2, 0.6, 0.4]))
    assert r.use_expert.tolist() == [False, True, False]


@pytest.mark.parametrize("m", list(range(1, 16)))
def test_route_for_m_experts(m):
    g = torch.Generator().manual_seed(m)
    probs = torch.rand(6, m + 1, generator=g).softmax(-1)
    r = route(probs, tau=0.0)
    for b in range(6):
        best = max(range(1, m + 1), key=lambda i: probs[b, i].item())
        assert r.expert[b].item() == best and r.s_top[b].item() == probs[b, best].item()


def test_selector_branches_and_tau_edge():
    g = torch.full((3, 1, 2, 2, 2), 2.0)
    e = torch.full((3, 1, 2, 2, 2), -4.0)
    s = torch.tensor([0.3, 0.5, 0.8])
    out = select_masks(g, e, s, tau=0.5)
    assert torch.equal(out[0], g[0])  # below tau: general
    assert torch.equal(out[1], g[1])  # exactly tau: general (strict inequality)
    assert torch.allclose(out[2], torch.full_like(g[2], 0.2 * 2.0 + 0.8 * -4.0))  # -2.8
    avg = select_masks(g, e, s, tau=0.5, weighting="avg")
    assert torch.allclose(avg[2], torch.full_like(g[2], -1.0)) and torch.equal(avg[0], g[0])
    sm = select_masks(g, e, s, tau=0.5, weighting="softmax")
    w = torch.exp(torch.tensor(0.8)) / (torch.exp(torch.tensor(0.2)) + torch.exp(torch.tensor(0.8)))
    assert torch.allclose(sm[2], (1 - w) * 2.0 + w * -4.0 + torch.zeros_like(g[2]))


def test_weights_and_errors():
    s = torch.tensor([0.0, 1.0])
    assert torch.equal(expert_weight(s), s)
    assert torch.allclose(expert_weight(s, weighting="softmax"), torch.sigmoid(2 * s - 1))
    with pytest.raises(InputError, match="weighting"):
        expert_weight(s, weighting="max")
    with pytest.raises(InputError, match="m \\+ 1"):
        route(torch.ones(2, 1))
