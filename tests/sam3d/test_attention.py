"""The fast encoder attention equals the literal padded computation of the published model."""

from __future__ import annotations

import itertools

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.sam3d import SAM3D_CONFIGS, Sam3DConfig, build_from_config
from medmoe.sam3d.image_encoder import Attention, Block3D
from medmoe.sam3d.reference import broadcast_rel_pos, literal_attention_branch


def per_element_bias(q_grid: torch.Tensor, t_d, t_h, t_w, grid: int) -> torch.Tensor:
    """The published bias written out element by element, straight from its definition:

    bias[(d,h,w), (d',h',w')] = q(d,h,w).T_d[d-w'+G-1] + q(d,h,d').T_h[h-w'+G-1]
                              + q(d,h,h').T_w[h'-w'+G-1]
    ``q_grid``: (G, G, G, C) queries on the full (padded) grid.
    """
    g = grid
    out = torch.zeros(g**3, g**3, dtype=q_grid.dtype)
    cells = list(itertools.product(range(g), repeat=3))
    for qi, (d, h, w) in enumerate(cells):
        for ki, (d2, h2, w2) in enumerate(cells):
            out[qi, ki] = (
                q_grid[d, h, w] @ t_d[d - w2 + g - 1]
                + q_grid[d, h, d2] @ t_h[h - w2 + g - 1]
                + q_grid[d, h, h2] @ t_w[h2 - w2 + g - 1]
            )
    return out


def test_literal_broadcast_matches_the_written_out_formula():
    g, c = 3, 4
    q = torch.randn(1, g**3, c, dtype=torch.float64)
    tables = [torch.randn(2 * g - 1, c, dtype=torch.float64) for _ in range(3)]
    got = broadcast_rel_pos(torch.zeros(1, g**3, g**3, dtype=torch.float64), q, *tables, g)
    want = per_element_bias(q[0].view(g, g, g, c), *tables, g)
    torch.testing.assert_close(got[0], want, rtol=1e-12, atol=1e-12)


def test_the_bias_is_not_the_textbook_decomposition():
    """Guard against 'fixing' the broadcast: the textbook q.T_d[d-d'] + ... differs."""
    g, c = 3, 4
    q = torch.randn(1, g**3, c, dtype=torch.float64)
    tables = [torch.randn(2 * g - 1, c, dtype=torch.float64) for _ in range(3)]
    got = broadcast_rel_pos(torch.zeros(1, g**3, g**3, dtype=torch.float64), q, *tables, g)
    cells = list(itertools.product(range(g), repeat=3))
    textbook = torch.tensor(
        [
            [
                q[0, qi]
                @ (
                    tables[0][d - d2 + g - 1]
                    + tables[1][h - h2 + g - 1]
                    + tables[2][w - w2 + g - 1]
                )
                for (d2, h2, w2) in cells
            ]
            for qi, (d, h, w) in enumerate(cells)
        ],
        dtype=torch.float64,
    )
    assert (got[0] - textbook).abs().max() > 1e-3


@pytest.mark.parametrize(("n", "window"), [(4, 6), (3, 7), (4, 0), (5, 5)])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_fast_block_matches_literal_padded_block(n, window, dtype, rtol):
    block = Block3D(dim=16, num_heads=2, grid_size=n, window_size=window).to(dtype)
    randomize_(block, std=0.3)
    x = torch.randn(2, n, n, n, 16, dtype=dtype)
    with torch.no_grad():
        fast = block(x)
        ref = block(x, reference=True)
    rel = (fast - ref).abs().max() / ref.abs().max()
    assert rel <= rtol, f"relative difference {rel:.3g}"


def test_virtual_key_carries_the_padding_mass():
    """With zero qkv weights every token is a padding token in disguise: q=b_q, k=b_k, v=b_v for
    all 6^3 positions. The output is then b_v projected, whatever the bias."""
    attn = Attention(dim=8, num_heads=2, grid=6).double()
    randomize_(attn, std=0.5)
    with torch.no_grad():
        attn.qkv.weight.zero_()
        out = attn(torch.randn(1, 4, 4, 4, 8, dtype=torch.float64))
        b_v = attn.qkv.bias[16:]
        want = attn.proj(b_v)
    torch.testing.assert_close(out[0, 1, 2, 3], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_fast_encoder_matches_literal_encoder(dtype, rtol):
    """Whole tiny encoder (4 blocks: window, global, window, global) at 128^3."""
    model = build_from_config(SAM3D_CONFIGS["tiny"]).to(dtype)
    encoder = randomize_(model.image_encoder, std=0.1)
    x = torch.randn(1, 1, 128, 128, 128, dtype=dtype)
    with torch.no_grad():
        fast = encoder(x)
        ref = encoder(x, reference=True)
    assert fast.shape == (1, 96, 8, 8, 8)
    rel = (fast - ref).abs().max() / ref.abs().max()
    assert rel <= rtol, f"relative difference {rel:.3g}"


def test_literal_branch_pads_with_zeros_after_norm():
    """Padding tokens enter the literal attention as exact zeros (so q,k,v = qkv biases)."""
    cfg = Sam3DConfig(encoder_dim=16, encoder_depth=1, encoder_heads=2, global_attn_indexes=())
    block = build_from_config(cfg).image_encoder.blocks[0].double()
    randomize_(block)
    seen = []
    block.attn.qkv.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        literal_attention_branch(block, torch.randn(1, 8, 8, 8, 16, dtype=torch.float64))
    padded = seen[0]
    assert padded.shape == (1, 14, 14, 14, 16)
    assert torch.count_nonzero(padded[:, 8:]) == 0 and torch.count_nonzero(padded[:, :, :, 8:]) == 0


def test_encoder_with_gradients_equals_inference_path():
    """With gradients the bias is built out of place (autograd cannot see ``out=``); both
    paths give the same embedding, and gradients reach the relative-position tables."""
    model = build_from_config(SAM3D_CONFIGS["tiny"]).double()
    encoder = randomize_(model.image_encoder, std=0.1)
    x = torch.randn(1, 1, 128, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        fast = encoder(x)
    graded = encoder(x)
    torch.testing.assert_close(graded, fast, rtol=1e-12, atol=1e-12)
    graded.square().sum().backward()
    for blk in encoder.blocks:
        assert blk.attn.rel_pos_h.grad is not None and blk.attn.rel_pos_h.grad.abs().sum() > 0


def _shell_mass_brute_force(a, b, c, n: int, grid: int) -> torch.Tensor:
    """``log sum exp(a[w'] + b[d', w'] + c[h', w'])`` over every padding key, enumerated."""
    full = (
        a[:, :, :, :, None, None, :]  # [d, h, w, ., ., w']
        + b[:, :, :, None, :, None, :]  # [d, h, ., d', ., w']
        + c[:, :, :, None, None, :, :]  # [d, h, ., ., h', w']
    )
    padding = torch.ones(grid, grid, grid, dtype=torch.bool)
    padding[:n, :n, :n] = False
    return torch.logsumexp(full[..., padding], dim=-1).reshape(a.shape[0], n**3)


def _terms(n: int, grid: int, dtype, padding_logit: float = 0.0):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, n, n, n, grid, generator=g, dtype=dtype)
    b = torch.randn(2, n, n, grid, grid, generator=g, dtype=dtype)
    c = torch.randn(2, n, n, grid, grid, generator=g, dtype=dtype)
    a[..., n:] += padding_logit  # keys with w' >= n
    b[:, :, :, n:] += padding_logit  # keys with d' >= n
    c[:, :, :, n:] += padding_logit  # keys with h' >= n
    return a, b, c


def test_padding_key_bias_is_the_log_mass_of_the_padding_keys():
    from medmoe.sam3d.rel_pos import padding_key_bias

    a, b, c = _terms(3, 5, torch.float64)
    torch.testing.assert_close(
        padding_key_bias(a, b, c, 3, 5), _shell_mass_brute_force(a, b, c, 3, 5), rtol=1e-12, atol=0
    )


def test_padding_key_bias_stays_finite_when_the_real_keys_dominate():
    """Once the real keys carry nearly all the mass, ``log(S_all - S_real)`` computed by
    subtraction rounds to log(0) in float32: -inf, with a NaN gradient (what stopped the demo's
    long pretraining). The shell sum gives the float64 answer and a finite gradient."""
    from medmoe.sam3d.rel_pos import padding_key_bias

    a, b, c = (t.requires_grad_() for t in _terms(3, 5, torch.float32, padding_logit=-40.0))
    out = padding_key_bias(a, b, c, 3, 5)
    out.sum().backward()
    want = _shell_mass_brute_force(*(t.detach().double() for t in (a, b, c)), 3, 5)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-4)
    assert all(torch.isfinite(t.grad).all() for t in (a, b, c))
