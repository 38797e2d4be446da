"""The gate keeps learning under top-p (issue #27, item 1).

With renormalisation, a single kept expert's weight is ``p_k / p_k = 1``: a constant, so the
task loss gave the gate exactly zero gradient once top-p kept one expert. The straight-through
weights keep the forward value and take the gradient of the un-renormalised probabilities.
"""

from __future__ import annotations

import pytest
import torch

from medmoe.multitask.model.heads import TaskHead
from medmoe.multitask.model.routing import route_weights


class Const(torch.nn.Module):
    """An expert whose output is a fixed number per sample (its own gradient plays no part)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, low, high):
        return torch.full((low.shape[0], 1), self.value)


@pytest.mark.parametrize("renormalize", [True, False])
def test_task_loss_reaches_the_gate_with_one_kept_expert(renormalize):
    torch.manual_seed(0)
    head = TaskHead(experts=[Const(2.0), Const(-1.0), Const(5.0)], gate_in=4)
    with torch.no_grad():  # a confident gate: top-p (p = 0.5) keeps expert 0 only
        head.gate.weight.zero_()
        head.gate.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    low, high, pooled = torch.zeros(3, 1, 2, 2), torch.zeros(3, 1, 2, 2), torch.randn(3, 4)
    out = head(low, high, pooled, dense=False, p=0.5, renormalize=renormalize)
    assert out.mask.sum(-1).tolist() == [1, 1, 1]
    # forward values as before: the renormalised weight of the one kept expert is 1
    p0 = out.probs[:, 0].detach()
    expected = torch.full((3, 1), 2.0) if renormalize else 2.0 * p0[:, None]
    assert torch.allclose(out.output.detach(), expected)
    out.output.sum().backward()
    grad = head.gate.bias.grad
    # by hand: d(sum_b 2 * p0_b)/d bias_j = 2 * sum_b p0_b (delta_0j - p_j,b), non-zero for j = 0
    probs = out.probs.detach()
    ref = 2.0 * (p0[:, None] * (torch.eye(3)[0] - probs)).sum(0)
    assert grad.abs().sum() > 0
    assert torch.allclose(grad, ref, atol=1e-6)


def test_route_weights_forward_values_unchanged_gradient_of_raw_probs():
    logits = torch.tensor([[1.0, 0.2, -0.3], [0.1, 0.3, 0.2]], requires_grad=True)
    probs = logits.softmax(-1)
    weights, mask = route_weights(probs, dense=False, p=0.8, renormalize=True)
    kept = probs.detach() * mask
    assert torch.allclose(weights.detach(), kept / kept.sum(-1, keepdim=True))
    g = torch.randn(2, 3)
    (weights * g).sum().backward()
    logits_ref = logits.detach().clone().requires_grad_(True)
    (logits_ref.softmax(-1) * mask * g).sum().backward()  # the straight-through gradient
    assert torch.allclose(logits.grad, logits_ref.grad, atol=1e-6)
