from __future__ import annotations

import torch

from medmoe.moe import Gate, GateConfig, MoEPredictor, MoESam3D
from medmoe.sam3d import Sam3DPredictor, build_mask_decoder, build_sam3d


def test_gate_shapes_and_softmax():
    for m in (1, 4, 15):
        gate = Gate(config=GateConfig(embed_dim=96, num_experts=m))
        probs = gate(
            torch.randn(1, 96, 8, 8, 8), torch.randn(1, 96, 8, 8, 8), torch.randn(3, 5, 96)
        )
        assert probs.shape == (3, m + 1)
        assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-6)


def test_gate_resize_keeps_existing_choices():
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=2)).eval()
    args = (torch.randn(1, 96, 8, 8, 8), torch.randn(1, 96, 8, 8, 8), torch.randn(4, 3, 96))
    bigger = gate.resize(3).eval()
    with torch.no_grad():
        old, new = gate.logits(*args), bigger.logits(*args)
    assert torch.allclose(old, new[:, :3]) and (new[:, 3] == -20).all()


class CountingDecoder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kw):
        self.calls += 1
        return self.inner(*args, **kw)


def test_predictor_runs_only_the_top1_expert_and_matches_general_below_tau():
    torch.manual_seed(0)
    base = build_sam3d("tiny")
    experts = {f"e{i}": CountingDecoder(build_mask_decoder(base.config)) for i in range(5)}
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=5))
    with torch.no_grad():  # force the gate towards expert 3 with probability ~0.9
        gate.head[3].weight.zero_()
        gate.head[3].bias.copy_(torch.tensor([0.0, 0, 0, 5.0, 0, 0]))
    moe = MoESam3D(base=base, experts=experts, gate=gate, tau=0.5)
    vol = torch.randn(128, 128, 128)
    pred = MoEPredictor(moe)
    pred.set_image(vol)
    out = pred.predict(points=[[60, 60, 60]], labels=[1])
    assert out.used_expert and out.expert_name == "e2" and out.s_top > 0.5
    assert [e.calls for e in experts.values()] == [0, 0, 1, 0, 0]
    assert out.gate_probs.shape == (6,)
    # above 0.5 -> mixture; with tau raised above s_top -> exactly the general model
    moe.tau = 0.99
    out2 = pred.predict(points=[[60, 60, 60]], labels=[1])
    plain = Sam3DPredictor(base)
    plain.set_image(vol)
    ref = plain.predict(points=[[60, 60, 60]], labels=[1])
    assert not out2.used_expert and torch.equal(out2.low_res_logits, ref.low_res_logits)
    assert [e.calls for e in experts.values()] == [0, 0, 1, 0, 0]  # no expert ran


def _moe_towards(index: int, m: int = 3) -> MoESam3D:
    from tests.sam3d.helpers import randomize_

    base = randomize_(build_sam3d("tiny"), std=0.05)
    experts = {
        f"e{i}": randomize_(build_mask_decoder(base.config), std=0.05, seed=i + 1) for i in range(m)
    }
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=m))
    with torch.no_grad():  # expert `index` (gate index index + 1) with probability ~0.97
        gate.head[3].weight.zero_()
        bias = torch.zeros(m + 1)
        bias[index + 1] = 6.0
        gate.head[3].bias.copy_(bias)
    return MoESam3D(base=base, experts=experts, gate=gate, tau=0.0, batch_decoders=True).eval()


def test_batched_general_and_expert_equal_one_by_one():
    """With ``batch_decoders`` and no gradients the general decoder and the expert run as one
    stacked call; the outputs equal running them one after the other (the path taken with
    gradients on, and by default on the CPU)."""
    moe = _moe_towards(1)
    emb = torch.randn(1, 96, 8, 8, 8)
    pts = (torch.tensor([[[60.0, 64, 70], [20, 30, 40]]]), torch.tensor([[1, 0]]))
    mask = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        batched = moe.decode(emb, points=pts, mask_input=mask)
    assert list(moe._stacked) == [2]  # only the pair (general, top-1 expert) was stacked
    with torch.enable_grad():
        ref = moe.decode(emb, points=pts, mask_input=mask)
    assert int(batched.routing.expert[0]) == 2 and bool(batched.routing.use_expert[0])
    for got, want in [
        (batched.low_res_logits, ref.low_res_logits),
        (batched.general_low_res_logits, ref.general_low_res_logits),
        (batched.iou, ref.iou),
    ]:
        assert ((got - want.detach()).abs().max() / want.detach().abs().max()) <= 1e-5
    assert torch.equal(batched.gate_probs, ref.gate_probs.detach())


def test_stacked_pair_is_rebuilt_when_weights_change():
    moe = _moe_towards(0)
    first = moe.stacked_pair(1)
    assert moe.stacked_pair(1) is first  # cached
    with torch.no_grad():
        moe.experts["e0"].iou_token.weight.add_(1.0)  # an in-place update bumps the version
    again = moe.stacked_pair(1)
    assert again is not first
    assert torch.equal(again.p["iou_token.weight"][1], moe.experts["e0"].iou_token.weight)
    assert torch.equal(again.p["iou_token.weight"][0], moe.base.mask_decoder.iou_token.weight)


def test_cpu_default_runs_the_decoders_one_by_one():
    moe = _moe_towards(1)
    moe.batch_decoders = None  # the default: no stacking on the CPU (measured slower there)
    with torch.no_grad():
        out = moe.decode(
            torch.randn(1, 96, 8, 8, 8), points=(torch.tensor([[[9.0, 9, 9]]]), torch.tensor([[1]]))
        )
    assert bool(out.routing.use_expert[0]) and "_stacked" not in moe.__dict__


def test_forward_is_differentiable_to_the_gate_and_the_top1_expert():
    """``forward`` builds a graph (it once ran under ``no_grad``): a loss on the selected mask
    reaches the gate (through s_top, the mixing weight) and the top-1 expert, and nothing else."""
    moe = _moe_towards(1).train()
    pts = (torch.tensor([[[60.0, 64, 70]]]), torch.tensor([[1]]))
    out = moe(torch.randn(1, 1, 128, 128, 128), points=pts, tau=0.0)
    assert int(out.routing.expert[0]) == 2 and bool(out.routing.use_expert[0])
    out.low_res_logits.sum().backward()

    def reached(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())

    assert reached(moe.gate) and reached(moe.experts["e1"])
    assert not reached(moe.experts["e0"]) and not reached(moe.experts["e2"])
    assert all(p.grad is None for p in moe.base.parameters())  # frozen
