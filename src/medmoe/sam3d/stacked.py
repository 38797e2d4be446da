"""Several mask decoders of one architecture in one batched call.

The MoE runs the general decoder and a task expert on the same prompt and image embedding. The
experts are copies of the published decoder, so their weights stack: every linear layer becomes
one ``baddbmm`` over a leading "decoder" axis, every attention one fused call, and the
upscaling two batched GEMMs. :class:`StackedDecoders` stacks the weights once (callers cache it)
and runs :class:`medmoe.sam3d.MaskDecoder3D`'s computation with them; the tests compare it with
the decoders run one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.sam3d.mask_decoder import MaskDecoder3D, _blocks_to_grid


class StackedDecoders:
    """``E`` decoders' weights stacked along a new first axis (inference only, no gradients).

    ``fingerprint`` identifies the weights it was built from; a cache compares it with
    :func:`weights_fingerprint` of the current decoders to know when to rebuild.
    """

    def __init__(self, decoders: Sequence[MaskDecoder3D]) -> None:
        first = decoders[0]
        states = [d.state_dict() for d in decoders]
        shapes = [{k: v.shape for k, v in s.items()} for s in states]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("stacked decoders must share one architecture")
        with torch.no_grad():
            self.p = {k: torch.stack([s[k].detach() for s in states]) for k in states[0]}
        self.count = len(decoders)
        self.num_mask_tokens = first.num_mask_tokens
        self.depth = len(first.transformer.layers)
        self.heads = first.transformer.layers[0].self_attn.num_heads
        self.mlp_act = first.transformer.layers[0].mlp.act
        self.act1, self.act2 = first.output_upscaling[2], first.output_upscaling[4]
        self.eps = first.output_upscaling[1].eps
        self.iou_depth = len(first.iou_prediction_head.layers)
        self.fingerprint = weights_fingerprint(decoders)

    def _linear(self, name: str, x: Tensor) -> Tensor:
        """``x`` ``(E, ..., in)`` through the E linear layers ``name``."""
        w, b = self.p[f"{name}.weight"], self.p[f"{name}.bias"]
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return torch.baddbmm(b[:, None], flat, w.transpose(1, 2)).view(*x.shape[:-1], -1)

    def _norm(self, name: str, x: Tensor, eps: float = 1e-5) -> Tensor:
        w, b = self.p[f"{name}.weight"], self.p[f"{name}.bias"]
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (-1,)
        return F.layer_norm(x, x.shape[-1:], eps=eps) * w.view(shape) + b.view(shape)

    def _attention(self, name: str, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``(E, B, L, C)`` queries over ``(E, B, S, C)`` keys/values."""
        e, b = q.shape[:2]

        def heads(x: Tensor) -> Tensor:
            return x.reshape(e * b, x.shape[2], self.heads, -1).transpose(1, 2)

        q = heads(self._linear(f"{name}.q_proj", q))
        k = heads(self._linear(f"{name}.k_proj", k))
        v = heads(self._linear(f"{name}.v_proj", v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        return self._linear(f"{name}.out_proj", out.reshape(e, b, q.shape[2], -1))

    def _two_way(self, keys: Tensor, key_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        queries = tokens
        for i in range(self.depth):
            n = f"transformer.layers.{i}"
            if i == 0:  # skip_first_layer_pe
                queries = self._attention(f"{n}.self_attn", queries, queries, queries)
            else:
                q = queries + tokens
                queries = queries + self._attention(f"{n}.self_attn", q, q, queries)
            queries = self._norm(f"{n}.norm1", queries)
            q, k = queries + tokens, keys + key_pe
            attn = self._attention(f"{n}.cross_attn_token_to_image", q, k, keys)
            queries = self._norm(f"{n}.norm2", queries + attn)
            mlp = self._linear(
                f"{n}.mlp.lin2", self.mlp_act(self._linear(f"{n}.mlp.lin1", queries))
            )
            queries = self._norm(f"{n}.norm3", queries + mlp)
            q, k = queries + tokens, keys + key_pe
            attn = self._attention(f"{n}.cross_attn_image_to_token", k, q, queries)
            keys = self._norm(f"{n}.norm4", keys + attn)
        q, k = queries + tokens, keys + key_pe
        attn = self._attention("transformer.final_attn_token_to_image", q, k, keys)
        return self._norm("transformer.norm_final_attn", queries + attn), keys

    def _mlp(self, prefix: str, x: Tensor, layers: int) -> Tensor:
        for i in range(layers):
            x = self._linear(f"{prefix}.layers.{i}", x)
            x = F.relu(x) if i < layers - 1 else x
        return x

    def _conv_t2(self, name: str, tokens: Tensor) -> Tensor:
        """Stacked ``ConvTranspose3d(2, 2)``: ``(E, N, V, C_in)`` -> ``(E, N, V, 8, C_out)``."""
        w, b = self.p[f"{name}.weight"], self.p[f"{name}.bias"]
        e, c_in, c_out = w.shape[:3]
        weight = w.permute(0, 1, 3, 4, 5, 2).reshape(e, c_in, 8 * c_out)
        flat = tokens.reshape(e, -1, c_in)
        out = torch.baddbmm(b.repeat(1, 8)[:, None], flat, weight)
        return out.view(*tokens.shape[:-1], 8, c_out)

    @torch.no_grad()
    def __call__(
        self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Inputs as :meth:`MaskDecoder3D.forward` (shared by all decoders); returns
        ``masks (E, B, 1, s, s, s)`` and ``iou (E, B, 1)`` (``multimask_output=False``)."""
        e, bs = self.count, sparse.shape[0]
        src = image_embeddings.expand(bs, -1, -1, -1, -1) + dense
        x, y, z = src.shape[2:]
        out_tokens = torch.cat([self.p["iou_token.weight"], self.p["mask_tokens.weight"]], dim=1)
        tokens = torch.cat(
            [out_tokens[:, None].expand(e, bs, -1, -1), sparse[None].expand(e, -1, -1, -1)], dim=2
        )
        keys = src.flatten(2).transpose(1, 2)[None].expand(e, -1, -1, -1)
        key_pe = image_pe.flatten(2).transpose(1, 2)[None]
        hs, keys = self._two_way(keys, key_pe, tokens)
        hyper = self._mlp("output_hypernetworks_mlps.0", hs[:, :, 1:2], 3)  # (E, B, 1, C/8)
        h = self._conv_t2("output_upscaling.0", keys)  # (E, B, V, 8, C/4)
        h = self.act1(self._norm("output_upscaling.1", h, eps=self.eps))
        h = _blocks_to_grid(h.flatten(0, 1), (x, y, z)).reshape(e, bs, 8 * x * y * z, -1)
        h = self.act2(self._conv_t2("output_upscaling.3", h))  # (E, B, 8V, 8, C/8)
        masks = torch.matmul(
            h.reshape(e * bs, -1, h.shape[-1]), hyper.flatten(0, 1).transpose(1, 2)
        )
        masks = _blocks_to_grid(masks.view(e * bs, -1, 8, 1), (2 * x, 2 * y, 2 * z))
        iou = self._mlp("iou_prediction_head", hs[:, :, 0], self.iou_depth)[..., :1]
        return masks.permute(0, 4, 1, 2, 3).reshape(e, bs, 1, 4 * x, 4 * y, 4 * z), iou


def weights_fingerprint(decoders: Sequence[MaskDecoder3D]) -> tuple:
    """Storage and in-place version of every tensor: changes when any weight is changed or
    moved (``load_state_dict``, an optimizer step, ``.to(...)``)."""
    return tuple(
        (t.data_ptr(), t._version, t.device) for d in decoders for t in d.state_dict().values()
    )
