"""The modules that are exported to ONNX: thin wrappers with fixed, documented inputs.

The prompt inputs follow segment-anything's ONNX convention, extended to 3-D, so that one graph
takes any mix of points and a box with a variable number of tokens:

- ``point_coords`` ``(1, N, 3)`` float: voxel coordinates in the model's input frame;
- ``point_labels`` ``(1, N)`` float: 1 positive, 0 negative, -1 "not a point" (the padding token
  medmoe's prompt encoder appends when no box is given), 2 and 3 the two box corners;
- ``mask_input`` ``(1, 1, s, s, s)`` float and ``has_mask_input`` ``(1,)`` float (0 or 1).

:func:`medmoe.export.runtime.prompt_arrays` builds these from points, labels and a box in the
order :class:`medmoe.sam3d.prompt_encoder.PromptEncoder3D` uses, so the graphs give the torch
model's numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmoe.sam3d import MaskDecoder3D
from medmoe.sam3d.prompt_encoder import PromptEncoder3D


class EncoderGraph(nn.Module):
    """``volume`` ``(1, 1, S, S, S)`` -> ``image_embeddings`` ``(1, C, n, n, n)``."""

    def __init__(self, *, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, volume: Tensor) -> Tensor:
        return self.encoder(volume)


class PromptGraph(nn.Module):
    """The prompt encoder in branch-free form: labelled tokens and a masked dense prompt."""

    def __init__(self, *, prompt_encoder: PromptEncoder3D) -> None:
        super().__init__()
        self.pe = prompt_encoder
        self.register_buffer("image_pe", prompt_encoder.get_dense_pe().detach().clone())

    def sparse(self, point_coords: Tensor, point_labels: Tensor) -> Tensor:
        """``(1, N, C)`` tokens: each is its positional encoding plus the embedding of its label,
        or the "not a point" embedding alone for label -1, exactly as ``PromptEncoder3D`` embeds
        points and box corners."""
        pe = self.pe
        coords = pe.pe_layer.forward_with_coords(point_coords + 0.5, pe.input_image_size)
        labels = point_labels[..., None]
        sparse = torch.where(labels == -1, pe.not_a_point_embed.weight, coords)
        for i, emb in enumerate(pe.point_embeddings):
            sparse = sparse + (labels == i).to(sparse.dtype) * emb.weight
        return sparse

    def dense(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """``(1, C, n, n, n)``: the downscaled mask prompt, or the "no mask" embedding."""
        pe = self.pe
        has = has_mask_input.reshape(-1, 1, 1, 1, 1)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1, 1)
        return has * pe.mask_downscaling(mask_input) + (1 - has) * no_mask


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + one mask decoder -> ``(low_res_logits (1, 1, s, s, s), iou (1, 1))``."""

    def __init__(self, *, prompt_encoder: PromptEncoder3D, decoder: MaskDecoder3D) -> None:
        super().__init__()
        self.prompt = PromptGraph(prompt_encoder=prompt_encoder)
        self.decoder = decoder

    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
    ) -> tuple[Tensor, Tensor]:
        sparse = self.prompt.sparse(point_coords, point_labels)
        dense = self.prompt.dense(mask_input, has_mask_input)
        return self.decoder(image_embeddings, self.prompt.image_pe, sparse, dense)


def _mha(mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``nn.MultiheadAttention`` (batch first, no mask) with every reshape written with ``-1``,
    so that the traced graph keeps the token count dynamic (the module's own code bakes it in)."""
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    heads = mha.num_heads

    def split(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1, heads, mha.head_dim).transpose(1, 2)

    q, k, v = (
        split(F.linear(query, w_q, b_q)),
        split(F.linear(key, w_k, b_k)),
        split(F.linear(value, w_v, b_v)),
    )
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    return mha.out_proj(out.reshape(out.shape[0], -1, mha.embed_dim))


class GateGraph(nn.Module):
    """Prompt encoder + the MoE gate -> ``gate_probs`` ``(1, m + 1)`` (index 0: no expert).

    Mirrors :meth:`medmoe.moe.gate.Gate.logits` step by step with :func:`_mha` in place of the
    attention modules' own forward (the export tests compare the two).
    """

    def __init__(self, *, prompt_encoder: PromptEncoder3D, gate: nn.Module) -> None:
        super().__init__()
        self.prompt = PromptGraph(prompt_encoder=prompt_encoder)
        self.gate = gate

    def forward(
        self, image_embeddings: Tensor, point_coords: Tensor, point_labels: Tensor
    ) -> Tensor:
        g = self.gate
        q = self.prompt.sparse(point_coords, point_labels)
        img = image_embeddings.flatten(2).transpose(1, 2)
        pe = self.prompt.image_pe.flatten(2).transpose(1, 2)
        q = g.norm1(q + _mha(g.self_attn, q, q, q))
        q = g.norm2(q + _mha(g.prompt_to_image, q, img + pe, img))
        q = g.norm3(q + g.mlp(q))
        img = g.norm4(img + _mha(g.image_to_prompt, img + pe, q, q))
        pooled = torch.cat([img.mean(dim=1), q.mean(dim=1)], dim=-1)
        return g.head(pooled).softmax(dim=-1)
