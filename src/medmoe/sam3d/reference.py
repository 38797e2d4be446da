"""Literal reference of the published window/global attention (slow; tests and benchmarks only).

This module reproduces the published computation step by step: zero-pad the normalised token
grid to the window size at the end of each axis, attend over *all* padded tokens with no mask,
add the relative-position bias with the published broadcasting, and crop the real tokens back.
:class:`medmoe.sam3d.image_encoder.Attention` must give the same numbers from the real tokens only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.sam3d.rel_pos import table_lookup


def broadcast_rel_pos(
    attn: Tensor, q: Tensor, t_d: Tensor, t_h: Tensor, t_w: Tensor, grid: int
) -> Tensor:
    """Add the bias the published way. ``attn``: ``(BH, G^3, G^3)``; ``q``: ``(BH, G^3, C)``.

    The per-axis products are ``(BH, G, G, G, G)`` tensors ``[d, h, w, k]`` and are added to the
    ``(BH, d, h, w, d', h', w')`` logits through these broadcasts (as in the published code):
    ``rel_d[:, :, :, :, None, None]`` puts ``k`` on ``w'``; ``rel_h[:, :, :, None, :, None]`` puts
    ``w`` on ``d'`` and ``k`` on ``w'``; ``rel_w[:, :, :, None, None, :]`` puts ``w`` on ``h'`` and
    ``k`` on ``w'``.
    """
    bh, _, ch = q.shape
    rq = q.reshape(bh, grid, grid, grid, ch)
    rel_d = torch.einsum("bdhwc,dkc->bdhwk", rq, table_lookup(t_d, grid, grid, grid))
    rel_h = torch.einsum("bdhwc,hkc->bdhwk", rq, table_lookup(t_h, grid, grid, grid))
    rel_w = torch.einsum("bdhwc,wkc->bdhwk", rq, table_lookup(t_w, grid, grid, grid))
    attn = attn.view(bh, grid, grid, grid, grid, grid, grid)
    attn = (
        attn
        + rel_d[:, :, :, :, None, None]
        + rel_h[:, :, :, None, :, None]
        + rel_w[:, :, :, None, None, :]
    )
    return attn.view(bh, grid**3, grid**3)


def literal_attention(attn_module, x: Tensor) -> Tensor:
    """Plain softmax attention over a full ``(B, G, G, G, dim)`` grid, bias added literally."""
    bsz, grid = x.shape[0], x.shape[1]
    heads = attn_module.num_heads
    qkv = attn_module.qkv(x).reshape(bsz, grid**3, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, bsz * heads, grid**3, -1).unbind(0)
    logits = (q * attn_module.scale) @ k.transpose(-2, -1)
    logits = broadcast_rel_pos(
        logits, q, attn_module.rel_pos_d, attn_module.rel_pos_h, attn_module.rel_pos_w, grid
    )
    out = logits.softmax(dim=-1) @ v
    out = out.view(bsz, heads, grid, grid, grid, -1).permute(0, 2, 3, 4, 1, 5)
    return attn_module.proj(out.reshape(bsz, grid, grid, grid, -1))


def literal_attention_branch(block, x_norm: Tensor) -> Tensor:
    """The attention branch of a published block on normalised tokens ``(B, n, n, n, dim)``.

    Window blocks pad to ``window_size`` (the grid is never larger than one window here, so the
    window partition is the padding alone), attend over the padded grid, and crop back.
    """
    n = x_norm.shape[1]
    ws = block.window_size
    if ws == 0:
        return literal_attention(block.attn, x_norm)
    pad = ws - n
    padded = F.pad(x_norm, (0, 0, 0, pad, 0, pad, 0, pad))
    out = literal_attention(block.attn, padded)
    return out[:, :n, :n, :n, :].contiguous()
