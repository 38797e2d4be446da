from __future__ import annotations

import pytest
import torch

from medmoe.errors import CheckpointError, InputError
from medmoe.multitask.model.backbone import ResNet50, load_torchvision_resnet50
from medmoe.multitask.model.heads import TaskHead
from medmoe.multitask.model.routing import group_by_expert_set, route_weights, top_p_mask, use_dense


def torchvision_resnet50_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision's ResNet-50 state-dict keys and shapes, written out from its naming scheme."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{k}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for li, (planes, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def test_torchvision_state_dict_round_trip(tmp_path):
    expected = torchvision_resnet50_shapes()
    model = ResNet50()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    g = torch.Generator().manual_seed(0)
    fake = {k: (torch.randn(s, generator=g) if s else torch.tensor(7)) for k, s in expected.items()}
    torch.save(fake, tmp_path / "resnet50-0676ba61.pth")
    load_torchvision_resnet50(model, tmp_path / "resnet50-0676ba61.pth")
    assert all(torch.equal(model.state_dict()[k], fake[k]) for k in expected)
    low, high = model.eval()(torch.randn(1, 3, 64, 96))
    assert low.shape == (1, 256, 16, 24) and high.shape == (1, 2048, 4, 6)  # output stride 4 and 16
    del fake["fc.bias"]
    torch.save(fake, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-50"):
        load_torchvision_resnet50(model, tmp_path / "bad.pth")


def test_top_p_edge_cases():
    probs = torch.tensor(
        [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3], [0.05, 0.05, 0.9]]
    )
    assert top_p_mask(probs, 0.5).tolist() == [
        [True, False, False],
        [False, True, False],
        [True, True, False],
        [False, False, True],
    ]
    assert top_p_mask(probs, 0.8).tolist() == [
        [True, True, False],
        [False, True, True],
        [True, True, True],
        [False, False, True],
    ]
    assert top_p_mask(probs, 1.0).sum(-1).tolist() == [3, 3, 3, 3]
    assert top_p_mask(probs, 1e-6).sum(-1).tolist() == [1, 1, 1, 1]  # at least one expert
    with pytest.raises(InputError):
        top_p_mask(probs, 0.0)


def test_renormalisation_and_dense_switch():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    w, m = route_weights(probs, dense=False, p=0.8)
    assert torch.allclose(w, torch.tensor([[0.6 / 0.9, 0.3 / 0.9, 0.0]]))
    w_raw, _ = route_weights(probs, dense=False, p=0.8, renormalize=False)
    assert torch.allclose(w_raw, torch.tensor([[0.6, 0.3, 0.0]]))
    w_dense, m_dense = route_weights(probs, dense=True)
    assert m_dense.all() and torch.allclose(w_dense, probs)
    assert [use_dense(e, 10) for e in range(10)] == [True] * 5 + [False] * 5
    assert [use_dense(e, 3, 0.5) for e in range(3)] == [True, True, False]
    assert group_by_expert_set(
        torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    ).keys() == {(0, 2), (1,)}


class Scale(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k
        self.calls = 0

    def forward(self, low, high):
        self.calls += low.shape[0]
        return high * self.k + low.mean(dim=(1, 2, 3), keepdim=True)  # per sample


def test_sparse_dispatch_equals_dense_masked():
    torch.manual_seed(0)
    experts = [Scale(k) for k in (1.0, -2.0, 3.0)]
    head = TaskHead(experts=experts, gate_in=4)
    low, high = torch.randn(6, 2, 3, 3), torch.randn(6, 4, 3, 3)
    pooled = torch.randn(6, 4) * 3
    out = head(low, high, pooled, dense=False, p=0.6)
    # reference: every expert on every sample, weighted by the masked, renormalised weights
    weights, mask = route_weights(head.gate(pooled).softmax(-1), dense=False, p=0.6)
    ref = sum(
        weights[:, e].reshape(-1, 1, 1, 1)
        * torch.stack([experts[e](low[i : i + 1], high[i : i + 1])[0] for i in range(6)])
        for e in range(3)
    )
    assert torch.allclose(out.output, ref, atol=1e-6)
    assert torch.equal(out.mask, mask)
    calls_sparse = sum(e.calls for e in experts) - 3 * 6  # the reference ran each expert on all
    assert calls_sparse == int(mask.sum())
