"""The SAM-Med3D image encoder: a 3D ViT with window and global blocks and a conv neck.

Parameter names match the published checkpoints (``image_encoder.blocks.0.attn.qkv.weight``...).
The default attention is the exact fast path of :mod:`medmoe.sam3d.rel_pos`; ``reference=True``
runs the literal padded computation of :mod:`medmoe.sam3d.reference` instead (tests, benchmarks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmoe.sam3d import rel_pos
from medmoe.sam3d.common import LayerNorm3d, MLPBlock


class PatchEmbed3D(nn.Module):
    """Non-overlapping cubic patches to tokens: ``(B, C, X, Y, Z) -> (B, X/p, Y/p, Z/p, dim)``."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


class Attention(nn.Module):
    """Multi-head self-attention with the published broadcast relative-position bias.

    ``grid`` is the side of the grid the published block attends on: the window size (14) for
    window blocks, whose real ``n^3`` tokens (n = 8) are zero-padded at the end of each axis with
    no attention mask, or ``n`` for global blocks. :meth:`forward` computes exactly that result
    from the real tokens alone: the padding keys collapse into one virtual key (see
    :func:`medmoe.sam3d.rel_pos.padding_key_bias`) and the attention is one
    ``scaled_dot_product_attention`` call with a float bias mask.
    """

    def __init__(self, *, dim: int, num_heads: int, grid: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.grid = grid
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, n, n, n, dim)`` normalised real tokens; returns the same shape.

        With padding, one zero token is appended before ``qkv``: its query, key and value are the
        ``qkv`` biases, i.e. the padding query ``b_q`` and the virtual key ``b_k`` / value
        ``b_v``, so no concatenation of keys or values is needed. The attention is one fused
        ``scaled_dot_product_attention`` call on 4-D tensors (PyTorch's CPU flash kernel takes
        a float mask; 3-D inputs fall back to the unfused math path).
        """
        bsz, n, dim = x.shape[0], x.shape[1], x.shape[-1]
        if not (x.shape[1] == x.shape[2] == x.shape[3]) or n > self.grid:
            raise ValueError(f"expected a cubic token grid of side <= {self.grid}, got {x.shape}")
        heads, tokens = self.num_heads, n**3
        padded = self.grid > n
        seq = x.reshape(bsz, tokens, dim)
        if padded:
            seq = torch.cat([seq, seq.new_zeros(bsz, 1, dim)], dim=1)
        qkv = self.qkv(seq).view(bsz, seq.shape[1], 3, heads, dim // heads)
        q = qkv[:, :tokens, 0].transpose(1, 2)  # (B, H, n^3, C), a view
        k, v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        mask = rel_pos.attention_bias(
            q.reshape(bsz * heads, n, n, n, -1),
            qkv[:, tokens, 0].reshape(bsz * heads, -1) if padded else None,
            self.rel_pos_d,
            self.rel_pos_h,
            self.rel_pos_w,
            self.grid,
        ).view(bsz, heads, tokens, k.shape[2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(bsz, n, n, n, dim))


class Block3D(nn.Module):
    """Pre-norm transformer block; ``window_size == 0`` means global attention."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        grid_size: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = norm_layer(dim, eps=1e-6)
        self.attn = Attention(dim=dim, num_heads=num_heads, grid=window_size or grid_size)
        self.norm2 = norm_layer(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)

    def forward(self, x: Tensor, *, reference: bool = False) -> Tensor:
        if reference:
            from medmoe.sam3d.reference import literal_attention_branch

            x = x + literal_attention_branch(self, self.norm1(x))
        else:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT3D(nn.Module):
    """``(B, 1, S, S, S)`` volume -> ``(B, out_chans, S/16, S/16, S/16)`` image embedding."""

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        out_chans: int,
        global_attn_indexes: tuple[int, ...],
        window_size: int,
        in_chans: int = 1,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed3D(
            patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                dim=embed_dim,
                num_heads=num_heads,
                grid_size=grid,
                window_size=0 if i in global_attn_indexes else window_size,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward(self, x: Tensor, *, reference: bool = False) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, reference=reference)
        return self.neck(x.permute(0, 4, 1, 2, 3))
