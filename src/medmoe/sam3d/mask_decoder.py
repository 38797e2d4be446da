"""The SAM-Med3D mask decoder: two-way transformer, upscaling and hypernetwork mask heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmoe.sam3d.common import LayerNorm3d
from medmoe.sam3d.transformer import TwoWayTransformer


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (``layers.i`` as published)."""

    def __init__(self, *, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder3D(nn.Module):
    """Predicts low-resolution mask logits ``(B, M, 4n, 4n, 4n)`` from embeddings.

    Every task expert of the MoE is a copy of this module, so it is kept self-contained: its
    state dict is the published ``mask_decoder.*`` sub-dict.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer_depth: int = 2,
        transformer_heads: int = 8,
        transformer_mlp_dim: int = 2048,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(
            depth=transformer_depth,
            embedding_dim=transformer_dim,
            num_heads=transformer_heads,
            mlp_dim=transformer_mlp_dim,
        )
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm3d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose3d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(
                input_dim=transformer_dim,
                hidden_dim=transformer_dim,
                output_dim=transformer_dim // 8,
                num_layers=3,
            )
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            input_dim=transformer_dim,
            hidden_dim=iou_head_hidden_dim,
            output_dim=self.num_mask_tokens,
            num_layers=iou_head_depth,
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(masks, iou_pred)``: the first mask token only unless ``multimask_output``.

        ``image_embeddings`` ``(1 or B, C, n, n, n)``; ``image_pe`` ``(1, C, n, n, n)``;
        sparse ``(B, N, C)``; dense ``(B, C, n, n, n)``.
        """
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        bs = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat([tokens.unsqueeze(0).expand(bs, -1, -1), sparse_prompt_embeddings], 1)
        src = image_embeddings.expand(bs, -1, -1, -1, -1) + dense_prompt_embeddings
        pos = image_pe.expand(bs, -1, -1, -1, -1)
        b, c, x, y, z = src.shape

        hs, src = self.transformer(src, pos, tokens)  # src: (B, X*Y*Z, C) image tokens
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        wanted = range(1, self.num_mask_tokens) if multimask_output else range(1)
        hyper = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in wanted], dim=1
        )
        masks = self.upscaled_masks(src, hyper, (x, y, z))
        iou_pred = self.iou_prediction_head(iou_token_out)[:, list(wanted)]
        return masks, iou_pred

    def upscaled_masks(self, src: Tensor, hyper: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """``output_upscaling`` followed by the hypernetwork product, as plain GEMMs.

        ``src``: ``(B, X*Y*Z, C)`` image tokens; ``hyper``: ``(B, M, C/8)``; returns the mask
        logits ``(B, M, 4X, 4Y, 4Z)``. A transposed convolution with kernel 2 and stride 2 maps
        each input voxel to its own 2x2x2 output block: it is one GEMM ``(voxels, C_in) @
        (C_in, 8 C_out)`` followed by a rearrangement. Computing it so, channels last, replaces
        two slow ConvTranspose3d calls and their layout copies; the numbers are those of the
        published ``output_upscaling`` (same weights, same LayerNorm, same activations).
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        b, (x, y, z) = src.shape[0], grid
        h = _conv_t2(src, up1)  # (B, XYZ, 8, C/4): [voxel, (p, q, r), channel]
        h = act1(F.layer_norm(h, (int(norm.weight.shape[0]),), norm.weight, norm.bias, norm.eps))
        h = _blocks_to_grid(h, (x, y, z)).reshape(b, 8 * x * y * z, -1)
        h = act2(_conv_t2(h, up2))  # (B, 8XYZ, 8, C/8)
        masks = torch.matmul(h.flatten(1, 2), hyper.transpose(1, 2))  # (B, 64XYZ, M)
        masks = _blocks_to_grid(masks.view(b, -1, 8, hyper.shape[1]), (2 * x, 2 * y, 2 * z))
        return masks.permute(0, 4, 1, 2, 3)


def _conv_t2(tokens: Tensor, conv: nn.ConvTranspose3d) -> Tensor:
    """``ConvTranspose3d(kernel 2, stride 2)`` on channels-last voxels ``(B, V, C_in)``.

    Returns ``(B, V, 8, C_out)``: output ``(2i + p, 2j + q, 2k + r)`` of voxel ``(i, j, k)`` is
    at ``[v, 4p + 2q + r]``.
    """
    c_in, c_out = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 4, 1).reshape(c_in, 8 * c_out)  # (C_in, (p,q,r,co))
    flat = tokens.reshape(-1, c_in)
    bias = conv.bias
    out = flat @ weight if bias is None else torch.addmm(bias.repeat(8), flat, weight)
    return out.view(*tokens.shape[:2], 8, c_out)


def _blocks_to_grid(blocks: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """``(B, X*Y*Z, 8, C)`` per-voxel 2x2x2 blocks -> ``(B, 2X, 2Y, 2Z, C)`` (a copy)."""
    b, c, (x, y, z) = blocks.shape[0], blocks.shape[-1], grid
    out = blocks.view(b, x, y, z, 2, 2, 2, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return out.reshape(b, 2 * x, 2 * y, 2 * z, c)
