"""Multi-head attention between a few prompt tokens and many image tokens, with the projections
of the many folded into the few.

The mask decoder's cross-attentions and the MoE gate's attend between ``N`` tokens (the
decoder's output tokens and the prompt points: 6 to 20) and ``L`` image tokens (512 for
SAM-Med3D). Written as published, each one projects all ``L`` image tokens twice (keys and
values, or queries and outputs): ``2 L C I`` multiply-adds, ``I`` the internal width. The same
numbers come from projecting the few tokens instead, because every projection is linear:

- **few queries, many keys/values** (token -> image). With ``Q_h`` a head's queries and
  ``W^k_h, W^v_h`` its rows of the key/value weights,
  ``Q_h K_h^T = (Q_h W^k_h) X_k^T + Q_h b^k_h 1^T``. The second term is the same for every key
  of a query row, and a softmax does not change when a row is shifted, so it drops out. The
  attention weights ``A_h`` sum to 1 over the keys, so ``A_h V_h = (A_h X_v) W^v_h^T + b^v_h``.
- **many queries, few keys/values** (image -> token).
  ``Q_h K_h^T = X_q (W^q_h^T K_h^T) + b^q_h K_h^T``, and the output projection distributes over
  the heads: ``out = sum_h A_h (V_h W^o_h^T) + b^o``, one ``(L, H N) @ (H N, C)`` product.

Either way the image side costs ``2 L C H N`` multiply-adds instead of ``2 L C I``: about 3.5x
less for the decoder's ``I = 192, H = 8`` at ``N = 7``. The results equal the published
computation's to float rounding (the products are summed in another order; the tests compare
both at 1e-10 in float64). :func:`attention` takes the factored form only when it is the
cheaper one, and only without autograd, so training and ONNX export run the published form.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Projections(NamedTuple):
    """The four linear layers of one attention (weights ``(out, in)``, biases ``(out,)``)."""

    wq: Tensor
    bq: Tensor
    wk: Tensor
    bk: Tensor
    wv: Tensor
    bv: Tensor
    wo: Tensor
    bo: Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, p: Projections, *, num_heads: int) -> Tensor:
    """Multi-head attention of ``q`` ``(B, Nq, C)`` over ``k``/``v`` ``(B, Nk, C)``: the
    published computation, or a factored one with the same numbers when that costs less."""
    internal = p.wq.shape[0]
    if not _factorable():
        return published_attention(q, k, v, p, num_heads=num_heads)
    if num_heads * q.shape[1] < internal and k.shape[1] > q.shape[1]:
        return few_queries_attention(q, k, v, p, num_heads=num_heads)
    if num_heads * k.shape[1] < internal and q.shape[1] > k.shape[1]:
        return few_keys_attention(q, k, v, p, num_heads=num_heads)
    return published_attention(q, k, v, p, num_heads=num_heads)


def _factorable() -> bool:
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    return not (torch.is_grad_enabled() or tracing)


def published_attention(
    q: Tensor, k: Tensor, v: Tensor, p: Projections, *, num_heads: int
) -> Tensor:
    """Project queries, keys and values, attend per head, project the output."""

    def heads(x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)

    q, k, v = (
        heads(F.linear(q, p.wq, p.bq)),
        heads(F.linear(k, p.wk, p.bk)),
        heads(F.linear(v, p.wv, p.bv)),
    )
    out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head dim)
    b, h, n, d = out.shape
    return F.linear(out.transpose(1, 2).reshape(b, n, h * d), p.wo, p.bo)


def few_queries_attention(
    q: Tensor, k: Tensor, v: Tensor, p: Projections, *, num_heads: int
) -> Tensor:
    """Few queries ``(B, N, C)`` over many keys/values ``(B, L, C)`` without projecting them."""
    b, n, _ = q.shape
    internal, c = p.wk.shape
    d = internal // num_heads
    queries = F.linear(q, p.wq, p.bq).view(b, n, num_heads, d)
    # Each head's query mapped back to the input width: (B, H*N, C); b^k drops out (see above).
    q_in = torch.einsum("bnhd,hdc->bhnc", queries, p.wk.view(num_heads, d, c))
    scores = torch.bmm(q_in.reshape(b, num_heads * n, c), k.transpose(1, 2))
    weights = (scores * (1.0 / math.sqrt(d))).softmax(dim=-1)  # (B, H*N, L)
    mixed = torch.bmm(weights, v).view(b, num_heads, n, c)  # A_h X_v
    out = torch.einsum("bhnc,hdc->bnhd", mixed, p.wv.view(num_heads, d, c)).reshape(b, n, -1)
    return F.linear(out + p.bv, p.wo, p.bo)


def few_keys_attention(
    q: Tensor, k: Tensor, v: Tensor, p: Projections, *, num_heads: int
) -> Tensor:
    """Many queries ``(B, L, C)`` over few keys/values ``(B, N, C)`` without projecting the
    queries or the outputs."""
    b, n, _ = k.shape
    internal, c = p.wq.shape
    d = internal // num_heads
    scale = 1.0 / math.sqrt(d)
    keys = F.linear(k, p.wk, p.bk).view(b, n, num_heads, d) * scale
    values = F.linear(v, p.wv, p.bv).view(b, n, num_heads, d)
    # Scores of input-width queries: X_q @ (W^q_h^T K_h^T) + b^q_h K_h^T, for all heads at once.
    key_in = torch.einsum("bnhd,hdc->bchn", keys, p.wq.view(num_heads, d, c))
    key_bias = torch.einsum("bnhd,hd->bhn", keys, p.bq.view(num_heads, d))
    scores = torch.baddbmm(key_bias.reshape(b, 1, -1), q, key_in.reshape(b, c, -1))
    weights = scores.view(b, -1, num_heads, n).softmax(dim=-1)  # (B, L, H, N)
    # Each head's values through its columns of the output projection: (B, H*N, C).
    value_out = torch.einsum("bnhd,chd->bhnc", values, p.wo.view(-1, num_heads, d))
    return torch.baddbmm(p.bo, weights.reshape(b, -1, num_heads * n), value_out.flatten(1, 2))
