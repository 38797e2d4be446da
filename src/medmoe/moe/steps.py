"""The training steps of expert finetuning and gate training, as the shared engine calls them
(:func:`medmoe.train.engine.fit`): the interactive click loss (:mod:`medmoe.moe.interactive`)
on each crop of a batch, plus the gate's cross-entropy on its logits for gate training."""

from __future__ import annotations

import torch
from torch import Tensor

from medmoe.moe.interactive import dice_ce_loss, interactive_loss
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import DEFAULT_TAU
from medmoe.moe.train_config import MoETrainConfig
from medmoe.moe.warmup import weighted_ce
from medmoe.sam3d import Sam3D
from medmoe.train.engine import StepContext


class ClickStep:
    """The interactive loss of every crop of a batch (a list of crop dicts), averaged.

    ``decoder_for(embedding, item, ctx)`` returns the function the click loop calls:
    ``decode(points, labels, box, mask_input) -> logits`` or ``(logits, extra_loss)``.
    """

    def __init__(self, *, base: Sam3D, clicks: int, box_prob: float) -> None:
        self.base = base
        self.clicks = clicks
        self.box_prob = box_prob if base.prompt_encoder.supports_boxes else 0.0
        self.loss_fn = dice_ce_loss()

    def decoder_for(self, emb: Tensor, item: dict, ctx: StepContext):
        raise NotImplementedError

    def __call__(self, batch: list[dict], ctx: StepContext) -> Tensor:
        losses = []
        for item in batch:
            emb = item["embedding"].to(ctx.device, non_blocking=True).unsqueeze(0)
            loss, _ = interactive_loss(
                self.decoder_for(emb, item, ctx),
                item["label"],
                size=self.base.config.img_size,
                n_iter=self.clicks,
                rng=ctx.rng,
                box_prob=self.box_prob,
                loss_fn=self.loss_fn,
                device=ctx.device,
            )
            losses.append(loss)
        return torch.stack(losses).mean()


class ExpertStep(ClickStep):
    """Finetunes ``ctx.module`` (a copy of the general mask decoder)."""

    def decoder_for(self, emb, item, ctx):
        pe = self.base.prompt_encoder.get_dense_pe()

        def decode(pts, lab, box, mask_input):
            points = (pts, lab) if pts is not None else None
            return self.base.decode(
                emb, points=points, boxes=box, mask_input=mask_input, image_pe=pe,
                decoder=ctx.module,
            )[0]  # fmt: skip

        return decode


class GateStep(ClickStep):
    """Trains the gate (and the top-1 expert if it is trainable): the selected mask's
    interactive loss plus ``ce_weight`` times the gate's cross-entropy against the crop's
    task, on the gate's logits."""

    def __init__(
        self, *, moe: MoESam3D, config: MoETrainConfig, weights: Tensor | None = None
    ) -> None:
        super().__init__(base=moe.base, clicks=config.clicks, box_prob=config.box_prob)
        self.moe = moe
        self.ce_weight = config.ce_weight
        self.tau = config.tau if config.tau is not None else DEFAULT_TAU
        self.weights = weights  # per gate class (medmoe.moe.warmup.class_weights), or None

    def decoder_for(self, emb, item, ctx):
        pe = self.base.prompt_encoder.get_dense_pe()
        target = torch.tensor([item["task"]], device=ctx.device)

        def decode(pts, lab, box, mask_input):
            out = self.moe.decode(
                emb, points=(pts, lab) if pts is not None else None, boxes=box,
                mask_input=mask_input, image_pe=pe, tau=self.tau, gate=ctx.module,
            )  # fmt: skip
            ce = weighted_ce(out.gate_logits, target, self.weights)
            return out.low_res_logits, self.ce_weight * ce

        return decode
