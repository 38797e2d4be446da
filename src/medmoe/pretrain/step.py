"""The pretraining step: the whole model (encoder included) on the interactive click loss.

One implementation for ``medmoe pretrain`` and the demo's from-scratch pretraining."""

from __future__ import annotations

import torch
from torch import Tensor

from medmoe.moe.interactive import dice_ce_loss, interactive_loss
from medmoe.sam3d import Sam3D
from medmoe.train.engine import StepContext


class PretrainStep:
    """Each crop of a batch: encode, then ``clicks`` simulated click iterations (the first
    prompt a box with probability ``box_prob``); the mean of the crops' per-click losses."""

    def __init__(self, *, model: Sam3D, clicks: int, box_prob: float) -> None:
        self.model = model
        self.clicks = clicks
        self.box_prob = box_prob
        self.loss_fn = dice_ce_loss()

    def __call__(self, batch: list[dict], ctx: StepContext) -> Tensor:
        losses = []
        for item in batch:
            emb = self.model.image_encoder(item["image"].to(ctx.device)[None, None])
            pe = self.model.prompt_encoder.get_dense_pe()

            def decode(p, lab, box, mask_input, emb=emb, pe=pe):
                return self.model.decode(
                    emb,
                    points=(p, lab) if p is not None else None,
                    boxes=box,
                    mask_input=mask_input,
                    image_pe=pe,
                )[0]

            loss, _ = interactive_loss(
                decode, item["label"], size=self.model.config.img_size, n_iter=self.clicks,
                rng=ctx.rng, box_prob=self.box_prob, loss_fn=self.loss_fn, device=ctx.device,
            )  # fmt: skip
            losses.append(loss / self.clicks)
        return torch.stack(losses).mean()
