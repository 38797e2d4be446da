"""``MoESam3D``: one frozen SAM-Med3D (encoders + general decoder), m expert decoders, a gate."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from medmoe.errors import InputError
from medmoe.moe.gate import Gate
from medmoe.moe.selector import DEFAULT_TAU, Routing, route, select_masks, weighting_name
from medmoe.sam3d import MaskDecoder3D, Sam3D
from medmoe.sam3d.stacked import StackedDecoders, weights_fingerprint

STACK_CACHE = 4  # stacked (general, expert) weight pairs kept for the batched click


class MoEOutput(NamedTuple):
    low_res_logits: Tensor  # (B, 1, s, s, s) the selected mask's logits
    iou: Tensor  # (B, 1) the general decoder's IoU prediction
    gate_probs: Tensor  # (B, m + 1)
    routing: Routing
    general_low_res_logits: Tensor
    gate_logits: Tensor  # (B, m + 1) before the softmax: the gate's training loss reads these


class MoESam3D(nn.Module):
    """The SAM-Med3D-MoE model. The base (image encoder, prompt encoder, general decoder) is the
    published model and stays frozen; ``experts`` are copies of its mask decoder finetuned on
    new tasks, in gate order (gate index ``i`` is ``expert_names[i - 1]``)."""

    def __init__(
        self,
        *,
        base: Sam3D,
        experts: dict[str, MaskDecoder3D],
        gate: Gate,
        tau: float = DEFAULT_TAU,
        weighting: str = "s_top",
        batch_decoders: bool | None = None,
    ) -> None:
        super().__init__()
        if not experts:
            raise InputError("a MoE needs at least one expert")
        if gate.config.num_experts != len(experts):
            raise InputError(
                f"the gate has {gate.config.num_experts} expert outputs but {len(experts)} experts are given"
            )
        self.base = base
        self.experts = nn.ModuleDict(experts)
        self.gate = gate
        self.tau = float(tau)
        self.weighting = weighting_name(weighting)  # canonical (an old alias is accepted)
        # One stacked call for the general decoder and the expert (``None``: off on the CPU,
        # where benchmarks/moe_speed.py measured it slower than two calls; on elsewhere).
        self.batch_decoders = batch_decoders
        for p in self.base.parameters():
            p.requires_grad_(False)

    @property
    def expert_names(self) -> list[str]:
        return list(self.experts.keys())

    def expert_at(self, index: int) -> MaskDecoder3D:
        return self.experts[self.expert_names[index - 1]]

    def decode(
        self,
        image_embeddings: Tensor,
        *,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        image_pe: Tensor | None = None,
        tau: float | None = None,
        weighting: str | None = None,
        gate: nn.Module | None = None,
    ) -> MoEOutput:
        """Gate, general decoder, and for each sample only its top-1 expert (if ``s_top > tau``).

        ``gate`` swaps in a wrapper of the gate (DDP during training).
        """
        tau = self.tau if tau is None else tau
        weighting = weighting or self.weighting
        pe = self.base.prompt_encoder
        sparse, dense = pe(points, boxes, mask_input)
        image_pe = pe.get_dense_pe() if image_pe is None else image_pe
        gate_logits = (gate or self.gate)(image_embeddings, image_pe, sparse, return_logits=True)
        probs = gate_logits.softmax(dim=-1)
        routing = route(probs, tau=tau)
        index = self._batchable_expert(routing)
        if index is not None:  # inference, one expert for all rows: one batched call for both
            lows, ious = self.stacked_pair(index)(image_embeddings, image_pe, sparse, dense)
            general, expert_low, iou = lows[0], lows[1], ious[0]
        else:
            general, iou = self.base.mask_decoder(image_embeddings, image_pe, sparse, dense)
            expert_low = self._run_experts(
                routing, general, image_embeddings, image_pe, sparse, dense
            )
        mixed = select_masks(general, expert_low, routing.s_top, tau=tau, weighting=weighting)
        return MoEOutput(mixed, iou, probs, routing, general, gate_logits)

    def _run_experts(self, routing, general, image_embeddings, image_pe, sparse, dense) -> Tensor:
        """Each row's top-1 expert where it is used (``general``'s logits elsewhere)."""
        expert_low = general.clone()
        b_emb = image_embeddings.shape[0]
        for index in routing.expert[routing.use_expert].unique().tolist():
            rows = (routing.expert == index) & routing.use_expert
            emb = image_embeddings[rows] if b_emb > 1 else image_embeddings
            low, _ = self.expert_at(index)(emb, image_pe, sparse[rows], dense[rows])
            expert_low = expert_low.index_put((rows.nonzero()[:, 0],), low)
        return expert_low

    def _batchable_expert(self, routing: Routing) -> int | None:
        """The expert to batch with the general decoder: without gradients, when every row uses
        the same expert (always so for one click)."""
        on = self.batch_decoders
        if on is None:
            on = routing.expert.device.type != "cpu"
        if not on or torch.is_grad_enabled() or not bool(routing.use_expert.all()):
            return None
        first = routing.expert[0]
        if not bool((routing.expert == first).all()):
            return None
        index = int(first)
        # Only plain decoders stack (a wrapped or subclassed expert runs on its own).
        same = type(self.expert_at(index)) is type(self.base.mask_decoder) is MaskDecoder3D
        return index if same else None

    def stacked_pair(self, index: int) -> StackedDecoders:
        """The general decoder and expert ``index`` stacked, cached (the most recent
        ``STACK_CACHE`` pairs); rebuilt when either's weights change or move."""
        pair = (self.base.mask_decoder, self.expert_at(index))
        cache = self.__dict__.setdefault("_stacked", {})
        hit = cache.pop(index, None)
        if hit is None or hit.fingerprint != weights_fingerprint(pair):
            hit = StackedDecoders(pair)
        cache[index] = hit  # most recent last
        while len(cache) > STACK_CACHE:
            cache.pop(next(iter(cache)))
        return hit

    def forward(
        self,
        volume: Tensor,
        *,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        tau: float | None = None,
        weighting: str | None = None,
    ) -> MoEOutput:
        """End to end and differentiable (the gate and the experts get gradients; the base is
        frozen): ``(B, 1, S, S, S)`` volume -> :class:`MoEOutput`, logits ``(B, 1, S/4, S/4, S/4)``.

        ``points``: ``(coords (B, N, 3) in the input frame, labels (B, N))``, 1 positive, 0
        negative, -1 padding; ``boxes``: ``(B, 6)`` as ``(x1, y1, z1, x2, y2, z2)``;
        ``mask_input``: ``(B, 1, S/4, S/4, S/4)`` logits of a previous prediction; ``tau`` and
        ``weighting`` override the model's. Inference (no gradients, eval mode, the embedding
        kept over clicks) is :class:`medmoe.moe.predictor.MoEPredictor`'s.
        """
        return self.decode(
            self.base.image_encoder(volume),
            points=points,
            boxes=boxes,
            mask_input=mask_input,
            tau=tau,
            weighting=weighting,
        )
