"""``MoEPredictor``: :class:`Sam3DPredictor`'s interface for a :class:`MoESam3D`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from medmoe.moe.model import MoESam3D
from medmoe.sam3d.predictor import Sam3DPredictor


class MoEPrediction(NamedTuple):
    low_res_logits: Tensor
    logits: Tensor
    mask: Tensor
    iou: Tensor
    expert_name: str | None  # the top-1 expert, whether or not it was used
    s_top: float
    gate_probs: Tensor  # (m + 1,): index 0 "no specific expert", then the experts in order
    used_expert: bool


class MoEPredictor(Sam3DPredictor):
    """Encode once with the frozen base encoder; each ``predict`` runs the prompt encoder, the
    gate, the general decoder and at most one expert decoder (never all m)."""

    def __init__(self, moe: MoESam3D) -> None:
        super().__init__(moe.base)
        self.moe = moe.eval()

    @torch.inference_mode()
    def predict(self, points=None, labels=None, box=None, mask_input=None) -> MoEPrediction:
        features = self.features
        pts, boxes, mask = self.prompt_tensors(points, labels, box, mask_input)
        out = self.moe.decode(
            features, points=pts, boxes=boxes, mask_input=mask, image_pe=self._image_pe
        )
        logits = self.model.upsample(out.low_res_logits)
        index = int(out.routing.expert[0])
        return MoEPrediction(
            low_res_logits=out.low_res_logits,
            logits=logits,
            mask=logits > 0,
            iou=out.iou,
            expert_name=self.moe.expert_names[index - 1],
            s_top=float(out.routing.s_top[0]),
            gate_probs=out.gate_probs[0].detach().cpu(),
            used_expert=bool(out.routing.use_expert[0]),
        )
