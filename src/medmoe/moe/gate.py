"""The gating network of SAM-Med3D-MoE (paper §2.2).

1. The sparse prompt tokens attend to themselves (residual, LayerNorm).
2. They cross-attend to the image embedding as queries; the image tokens (plus their positional
   encoding) supply the keys and values (residual, LayerNorm).
3. An MLP updates them (residual, LayerNorm).
4. The image tokens cross-attend to the updated prompt tokens as queries (residual, LayerNorm).
5. The image tokens and the prompt tokens are mean-pooled and concatenated; two fully connected
   layers give ``m + 1`` logits and a softmax gives the scores (index 0: no specific expert).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medmoe.sam3d.factored import Projections, attention
from medmoe.utils.config import config_from_dict, config_to_dict


@dataclass(frozen=True)
class GateConfig:
    embed_dim: int  # channels of the image embedding (= the prompt token dimension)
    num_experts: int  # m; the gate has m + 1 outputs
    num_heads: int = 4
    mlp_dim: int = 256
    hidden_dim: int = 128
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GateConfig:
        return config_from_dict(cls, d, what="gate config")


class Gate(nn.Module):
    def __init__(self, *, config: GateConfig) -> None:
        super().__init__()
        d, h = config.embed_dim, config.num_heads
        self.config = config
        self.self_attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.prompt_to_image = nn.MultiheadAttention(d, h, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.mlp_dim), nn.GELU(), nn.Linear(config.mlp_dim, d)
        )
        self.norm3 = nn.LayerNorm(d)
        self.image_to_prompt = nn.MultiheadAttention(d, h, batch_first=True)
        self.norm4 = nn.LayerNorm(d)
        self.head = nn.Sequential(
            nn.Linear(2 * d, config.hidden_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.num_experts + 1),
        )

    def logits(self, image_embedding: Tensor, image_pe: Tensor, prompt_tokens: Tensor) -> Tensor:
        """``(B, C, n, n, n)``, ``(1, C, n, n, n)``, ``(B, N, C)`` -> ``(B, m + 1)`` logits."""
        b = prompt_tokens.shape[0]
        img = image_embedding.flatten(2).transpose(1, 2).expand(b, -1, -1)
        pe = image_pe.flatten(2).transpose(1, 2)
        q = prompt_tokens
        q = self.norm1(q + _attend(self.self_attn, q, q, q))
        q = self.norm2(q + _attend(self.prompt_to_image, q, img + pe, img))
        q = self.norm3(q + self.mlp(q))
        img = self.norm4(img + _attend(self.image_to_prompt, img + pe, q, q))
        pooled = torch.cat([img.mean(dim=1), q.mean(dim=1)], dim=-1)
        return self.head(pooled)

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        prompt_tokens: Tensor,
        *,
        return_logits: bool = False,
    ) -> Tensor:
        """Softmax scores ``(B, m + 1)``, or the logits with ``return_logits`` (training takes
        its cross-entropy on the logits; the call goes through ``forward`` so DDP sees it)."""
        logits = self.logits(image_embedding, image_pe, prompt_tokens)
        return logits if return_logits else logits.softmax(dim=-1)

    @torch.no_grad()
    def resize(self, num_experts: int, *, keep: list[int] | None = None) -> Gate:
        """A gate for a new expert list: kept rows are copied; new rows start never chosen.

        ``keep`` lists the old output indices to keep, in order (index 0 always first). New
        outputs get zero weights and a bias of -20, so the gate's choices among the kept outputs
        are unchanged until it is retrained.
        """
        keep = keep if keep is not None else list(range(self.config.num_experts + 1))
        cfg = GateConfig(**{**self.config.to_dict(), "num_experts": num_experts})
        new = Gate(config=cfg)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("head.3.")}
        new.load_state_dict(state, strict=False)
        last_old, last_new = self.head[3], new.head[3]
        last_new.weight.zero_()
        last_new.bias.fill_(-20.0)
        for i, old in enumerate(keep[: num_experts + 1]):
            last_new.weight[i] = last_old.weight[old]
            last_new.bias[i] = last_old.bias[old]
        return new


def _attend(mha: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``mha(q, k, v)``; without autograd, the factored form where the prompt side is the
    cheaper one to project (:mod:`medmoe.sam3d.factored`: the same numbers, to rounding)."""
    if torch.is_grad_enabled():
        return mha(q, k, v, need_weights=False)[0]
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    p = Projections(wq, bq, wk, bk, wv, bv, mha.out_proj.weight, mha.out_proj.bias)
    return attention(q, k, v, p, num_heads=mha.num_heads)
