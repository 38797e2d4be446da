"""The relative-position bias of the published SAM-Med3D encoder, and its exact fast form.

Pure tensor functions; the attention modules in :mod:`medmoe.sam3d.image_encoder` call them.

The published encoder attends on a cubic grid of side ``G`` (14 for window blocks, whose 8^3 real
tokens are zero-padded at the end of each axis; 8 for global blocks). Its decomposed relative
position bias is broadcast in a non-textbook way (see ``shared/docs/sam3d-exact-attention.md``):
for a query at ``(d, h, w)`` and a key at ``(d', h', w')``::

    bias = q(d, h, w)  . T_d[d  - w' + G - 1]
         + q(d, h, d') . T_h[h  - w' + G - 1]
         + q(d, h, h') . T_w[h' - w' + G - 1]

where ``q(a, b, c)`` is the unscaled query at grid position ``(a, b, c)`` and a position outside
the real tokens holds the query bias ``b_q`` (the padded input is zero after ``norm1``). The first
term depends on the key through ``w'`` only, the second through ``(d', w')``, the third through
``(h', w')``. That structure is what lets the 2232 padding keys collapse into one virtual key.

Shapes below: ``BH`` is batch x heads, ``n`` the real grid side, ``C`` the head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor


def table_lookup(table: Tensor, q_len: int, k_len: int, grid: int) -> Tensor:
    """``table[i - j + grid - 1]`` for ``i < q_len``, ``j < k_len``: shape ``(q_len, k_len, C)``.

    The published tables have exactly ``2 * grid - 1`` rows (no interpolation is ever needed).
    """
    if table.shape[0] != 2 * grid - 1:
        raise ValueError(
            f"relative-position table has {table.shape[0]} rows, expected {2 * grid - 1}"
        )
    i = torch.arange(q_len, device=table.device)[:, None]
    j = torch.arange(k_len, device=table.device)[None, :]
    return table[i - j + grid - 1]


def bias_terms(
    q: Tensor, q_pad: Tensor | None, t_d: Tensor, t_h: Tensor, t_w: Tensor, grid: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The three factors of the broadcast bias.

    Args:
        q: ``(BH, n, n, n, C)`` unscaled queries of the real tokens.
        q_pad: ``(BH, C)`` query of a padding position (the qkv query bias), or ``None`` when
            ``grid == n`` (global blocks: no padding).
        t_d, t_h, t_w: the ``(2 * grid - 1, C)`` tables.
        grid: side ``G`` of the grid the attention runs on.

    Returns:
        ``a`` ``(BH, n, n, n, G)`` indexed ``[d, h, w, w']``;
        ``b`` ``(BH, n, n, G, G)`` indexed ``[d, h, d', w']``;
        ``c`` ``(BH, n, n, G, G)`` indexed ``[d, h, h', w']``.
    """
    bh, n, _, _, ch = q.shape
    if grid > n:
        if q_pad is None:
            raise ValueError("q_pad is required when the attention grid is padded")
        pad = q_pad[:, None, None, None, :].expand(bh, n, n, grid - n, ch)
        q_ext = torch.cat([q, pad], dim=3)  # q(d, h, c) for c < G
    else:
        q_ext = q
    a = torch.einsum("bdhwc,dkc->bdhwk", q, table_lookup(t_d, n, grid, grid))
    b = torch.einsum("bdhjc,hkc->bdhjk", q_ext, table_lookup(t_h, n, grid, grid))
    c = torch.einsum("bdhjc,jkc->bdhjk", q_ext, table_lookup(t_w, grid, grid, grid))
    return a, b, c


def box_log_mass(a: Tensor, b: Tensor, c: Tensor, *, w: slice, d: slice, h: slice) -> Tensor:
    """``log sum exp(bias)`` over the keys ``(d', h', w')`` of one box, for every real query:
    ``(BH, n, n, n)``.

    The sum factorises as ``sum_w' exp(a[w']) * (sum_d' exp(b[d', w'])) * (sum_h' exp(c[h', w']))``
    and is evaluated in log space.
    """
    lb = torch.logsumexp(b[:, :, :, d, w], dim=3)  # (BH, n, n, w')
    lc = torch.logsumexp(c[:, :, :, h, w], dim=3)
    return torch.logsumexp(a[..., w] + (lb + lc)[:, :, :, None, :], dim=-1)


def padding_key_bias(a: Tensor, b: Tensor, c: Tensor, n: int, grid: int) -> Tensor:
    """Bias of the one virtual key that stands for all padding keys: ``(BH, n^3)``.

    Every padding key has key ``b_k`` and value ``b_v``, so together they act as one key ``b_k``
    with value ``b_v`` whose additive logit is the log of the bias mass over the padding keys:
    the padded box minus the real one. That shell is summed directly as three disjoint boxes
    (``w' >= n``; ``w' < n, d' >= n``; ``w' < n, d' < n, h' >= n``). Subtracting the real mass
    from the whole box's, ``log(S_all) + log1p(-S_real / S_all)``, is the same number in exact
    arithmetic, but once training makes the real keys' mass dominate, the ratio rounds to 1:
    the bias becomes -inf and its gradient NaN (the demo's long pretraining diverged so).
    """
    real, pad, every = slice(0, n), slice(n, grid), slice(0, grid)
    shell = torch.stack(
        [
            box_log_mass(a, b, c, w=pad, d=every, h=every),
            box_log_mass(a, b, c, w=real, d=pad, h=every),
            box_log_mass(a, b, c, w=real, d=real, h=pad),
        ]
    )
    out = torch.logsumexp(shell, dim=0)
    return out.reshape(out.shape[0], n**3)


def attention_bias(
    q: Tensor, q_pad: Tensor | None, t_d: Tensor, t_h: Tensor, t_w: Tensor, grid: int
) -> Tensor:
    """The whole additive attention mask, ``(BH, n^3, n^3)`` or ``(BH, n^3, n^3 + 1)`` padded.

    Column ``(d', h', w') < n^3`` holds ``a[w'] + b[d', w'] + c[h', w']`` (the bias between real
    tokens); with padding (``q_pad`` given, ``grid > n``) the last column holds
    :func:`padding_key_bias`. At inference it is written into one buffer, with no concatenation.
    The ``(d', h', w')`` part ``b + c`` is summed first on the small ``(BH, n, n, n, n, n)``
    tensor, so the ``n^6``-element mask is written in a single pass.
    """
    bh, n = q.shape[0], q.shape[1]
    a, b, c = bias_terms(q, q_pad, t_d, t_h, t_w, grid)
    tokens = n**3
    padded = q_pad is not None and grid > n
    # (d', h') merged into one axis: a 6-D broadcast runs about 2x faster than the 7-D one.
    bc = (b[:, :, :, :n, None, :n] + c[:, :, :, None, :n, :n]).reshape(bh, n, n, 1, n * n, n)
    a_w = a[:, :, :, :, None, :n]  # [d, h, w, ., w']
    if _functional(q, t_d, t_h, t_w):  # autograd, tracing and export need out-of-place ops
        real = (bc + a_w).reshape(bh, tokens, tokens)
        if not padded:
            return real
        return torch.cat([real, padding_key_bias(a, b, c, n, grid)[..., None]], dim=-1)
    mask = q.new_empty(bh, tokens, tokens + int(padded))
    torch.add(bc, a_w, out=mask[:, :, :tokens].view(bh, n, n, n, n * n, n))
    if padded:
        mask[:, :, tokens] = padding_key_bias(a, b, c, n, grid)
    return mask


def _functional(*tensors: Tensor) -> bool:
    """True when the mask must be built out of place (gradients needed, or tracing)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
