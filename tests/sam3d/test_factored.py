"""The factored attention (projections of the many tokens folded into the few) against the
literal softmax formula, and the decoder and gate with it against their published form."""

from __future__ import annotations

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.moe import Gate, GateConfig
from medmoe.sam3d import factored
from medmoe.sam3d.factored import Projections, attention
from medmoe.sam3d.mask_decoder import MaskDecoder3D

C, INTERNAL, HEADS = 32, 16, 4  # head dim 4


def _projections(dtype=torch.float64) -> Projections:
    gen = torch.Generator().manual_seed(3)
    shapes = [(INTERNAL, C), (INTERNAL,)] * 3 + [(C, INTERNAL), (C,)]
    return Projections(*(torch.randn(s, generator=gen, dtype=dtype) * 0.5 for s in shapes))


def _literal(q, k, v, p: Projections):
    """softmax(Q K^T / sqrt(d)) V per head, then the output projection, written out."""
    d = INTERNAL // HEADS
    qh = (q @ p.wq.T + p.bq).unflatten(-1, (HEADS, d)).transpose(1, 2)
    kh = (k @ p.wk.T + p.bk).unflatten(-1, (HEADS, d)).transpose(1, 2)
    vh = (v @ p.wv.T + p.bv).unflatten(-1, (HEADS, d)).transpose(1, 2)
    out = torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, dim=-1) @ vh  # sqrt(4) = 2
    return out.transpose(1, 2).flatten(2) @ p.wo.T + p.bo


@pytest.mark.parametrize("form", ["few_queries", "few_keys"])
def test_factored_forms_equal_the_softmax_formula(form):
    p = _projections()
    gen = torch.Generator().manual_seed(4)
    few, many = (2, 3, C), (2, 40, C)
    shapes = (few, many, many) if form == "few_queries" else (many, few, few)
    q, k, v = (torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes)
    fn = getattr(factored, f"{form}_attention")
    got = fn(q, k, v, p, num_heads=HEADS)
    torch.testing.assert_close(got, _literal(q, k, v, p), rtol=1e-10, atol=1e-10)


def test_dispatch_takes_the_cheaper_form_only_without_autograd(monkeypatch):
    p = _projections()
    taken = []
    for name in ("few_queries", "few_keys", "published"):
        real = getattr(factored, f"{name}_attention")
        monkeypatch.setattr(
            factored,
            f"{name}_attention",
            lambda *a, _n=name, _f=real, **kw: (taken.append(_n), _f(*a, **kw))[1],
        )
    few, many, crowd = (torch.randn(1, n, C, dtype=torch.float64) for n in (3, 40, 4 + 1))
    with torch.no_grad():
        attention(few, many, many, p, num_heads=HEADS)  # 4 heads x 3 = 12 < 16
        attention(many, few, few, p, num_heads=HEADS)
        attention(crowd, many, many, p, num_heads=HEADS)  # 4 x 5 = 20 >= 16: published
        attention(few, few, few, p, num_heads=HEADS)  # self-attention: published
    attention(few, many, many, p, num_heads=HEADS)  # autograd on: published
    assert taken == ["few_queries", "few_keys", "published", "published", "published"]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_decoder_without_autograd_equals_its_published_form(dtype, tol):
    """An 8-head, 192-wide decoder (internal width 96): 7 tokens take the factored form."""
    dec = randomize_(MaskDecoder3D(transformer_dim=192, transformer_mlp_dim=256), std=0.05)
    dec = dec.to(dtype)
    gen = torch.Generator().manual_seed(5)
    emb, pe, dense = (torch.randn(1, 192, 4, 4, 4, generator=gen, dtype=dtype) for _ in range(3))
    sparse = torch.randn(1, 2, 192, generator=gen, dtype=dtype)
    with torch.enable_grad():
        want, want_iou = dec(emb, pe, sparse, dense)
    with torch.no_grad():
        got, iou = dec(emb, pe, sparse, dense)
    scale = want.detach().abs().max()
    assert float((got - want.detach()).abs().max() / scale) <= tol
    torch.testing.assert_close(iou, want_iou.detach(), rtol=tol, atol=tol)


def test_gate_without_autograd_equals_torch_multihead_attention():
    gate = randomize_(Gate(config=GateConfig(embed_dim=32, num_experts=3)), std=0.1).double()
    gen = torch.Generator().manual_seed(6)
    emb, pe = (torch.randn(1, 32, 4, 4, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    tokens = torch.randn(2, 3, 32, generator=gen, dtype=torch.float64)
    with torch.enable_grad():
        want = gate.logits(emb, pe, tokens)  # nn.MultiheadAttention itself
    with torch.no_grad():
        got = gate.logits(emb, pe, tokens)
    torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-10)
