"""Prompt encoder and mask decoder against hand-derived values and literal formulas."""

from __future__ import annotations

import math

import torch
from tests.sam3d.helpers import randomize_

from medmoe.sam3d import build_sam3d
from medmoe.sam3d.transformer import Attention


def test_dense_pe_swaps_the_first_two_axes():
    """A point at the centre of token (i, j, k) matches the dense encoding at (j, i, k).

    Token (i, j, k) of the 8^3 grid covers voxels 16i..16i+15; the encoder shifts points by +0.5
    and divides by 128, so voxel 16i + 7.5 maps to (i + 0.5) / 8, the dense grid's cell centre.
    """
    pe = build_sam3d("tiny").prompt_encoder
    dense = pe.get_dense_pe()[0]  # (C, 8, 8, 8)
    for i, j, k in [(1, 5, 2), (0, 7, 3), (6, 2, 6)]:
        point = torch.tensor([[[16 * i + 7.5, 16 * j + 7.5, 16 * k + 7.5]]])
        enc = pe.pe_layer.forward_with_coords(point + 0.5, (128, 128, 128))[0, 0]
        torch.testing.assert_close(enc, dense[:, j, i, k], rtol=1e-5, atol=1e-5)
        assert (enc - dense[:, i, j, k]).abs().max() > 1e-2


def test_fourier_features_by_hand():
    """[sin, cos, sin] of 2*pi*(2u - 1) @ G, computed here with plain math."""
    pe = build_sam3d("tiny").prompt_encoder.pe_layer
    g = pe.positional_encoding_gaussian_matrix
    u = [0.25, 0.5, 0.875]
    enc = pe._encode(torch.tensor([u]))[0]
    col = 7
    arg = 2 * math.pi * sum((2 * u[a] - 1) * g[a, col].item() for a in range(3))
    n = g.shape[1]
    assert math.isclose(enc[col].item(), math.sin(arg), abs_tol=1e-5)
    assert math.isclose(enc[n + col].item(), math.cos(arg), abs_tol=1e-5)
    assert math.isclose(enc[2 * n + col].item(), math.sin(arg), abs_tol=1e-5)


def test_point_tokens_labels_and_padding():
    pe = randomize_(build_sam3d("tiny").prompt_encoder)
    coords = torch.tensor([[[10.0, 20.0, 30.0], [50.0, 60.0, 70.0]]])
    labels = torch.tensor([[1, 0]])
    sparse, dense = pe((coords, labels), None, None)
    assert sparse.shape == (1, 3, 96)  # two points + the padding point appended without a box
    torch.testing.assert_close(sparse[0, 2], pe.not_a_point_embed.weight[0])
    raw = pe.pe_layer.forward_with_coords(coords + 0.5, (128, 128, 128))[0]
    torch.testing.assert_close(sparse[0, 0], raw[0] + pe.point_embeddings[1].weight[0])
    torch.testing.assert_close(sparse[0, 1], raw[1] + pe.point_embeddings[0].weight[0])
    assert torch.equal(dense, pe.no_mask_embed.weight.view(1, -1, 1, 1, 1).expand(1, -1, 8, 8, 8))


def test_box_tokens_are_two_corners():
    pe = randomize_(build_sam3d("tiny").prompt_encoder)
    box = torch.tensor([[4.0, 5.0, 6.0, 40.0, 50.0, 60.0]])
    sparse, _ = pe(None, box, None)
    raw = pe.pe_layer.forward_with_coords(box.view(1, 2, 3) + 0.5, (128, 128, 128))[0]
    torch.testing.assert_close(sparse[0, 0], raw[0] + pe.point_embeddings[2].weight[0])
    torch.testing.assert_close(sparse[0, 1], raw[1] + pe.point_embeddings[3].weight[0])


def test_decoder_attention_matches_softmax_formula():
    attn = randomize_(Attention(embedding_dim=16, num_heads=2, downsample_rate=2)).double()
    q, k, v = (torch.randn(1, n, 16, dtype=torch.float64) for n in (3, 5, 5))
    got = attn(q, k, v)
    qh = attn.q_proj(q).view(1, 3, 2, 4).transpose(1, 2)
    kh = attn.k_proj(k).view(1, 5, 2, 4).transpose(1, 2)
    vh = attn.v_proj(v).view(1, 5, 2, 4).transpose(1, 2)
    out = torch.softmax(qh @ kh.transpose(-1, -2) / 2.0, dim=-1) @ vh  # sqrt(head dim 4) = 2
    want = attn.out_proj(out.transpose(1, 2).reshape(1, 3, 8))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_decoder_output_is_first_mask_token_and_multimask_the_rest():
    model = randomize_(build_sam3d("tiny"), std=0.05)
    emb = torch.randn(1, 96, 8, 8, 8)
    sparse, dense = model.prompt_encoder(
        (torch.tensor([[[64.0, 64.0, 64.0]]]), torch.tensor([[1]])), None, None
    )
    pe = model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        single, iou1 = model.mask_decoder(emb, pe, sparse, dense, multimask_output=False)
        multi, iou3 = model.mask_decoder(emb, pe, sparse, dense, multimask_output=True)
    assert single.shape == (1, 1, 32, 32, 32) and multi.shape == (1, 3, 32, 32, 32)
    assert iou1.shape == (1, 1) and iou3.shape == (1, 3)
    assert (single - multi[:, :1]).abs().max() > 1e-4  # token 0 is not token 1


def test_positional_encoding_is_float32_under_bf16_autocast():
    """The Fourier encoding's phases reach tens of radians: in bf16 the dense encoding was off
    by up to ~0.15. Under autocast it must equal the float32 encoding (float32 rounding only)."""
    from medmoe.sam3d.prompt_encoder import PositionEmbeddingRandom3D

    torch.manual_seed(0)
    pe = PositionEmbeddingRandom3D(64)
    exact = pe((8, 8, 8))
    coords = torch.rand(1, 5, 3) * 128
    exact_pts = pe.forward_with_coords(coords, (128, 128, 128))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = pe((8, 8, 8))
        pts = pe.forward_with_coords(coords, (128, 128, 128))
    assert dense.dtype == torch.float32 and pts.dtype == torch.float32
    assert (dense - exact).abs().max() < 1e-6 and (pts - exact_pts).abs().max() < 1e-6
