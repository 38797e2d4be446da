"""``MoEPredictor``: :class:`Sam3DPredictor`'s interface for a :class:`MoESam3D`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from medmoe.moe.model import MoESam3D
from medmoe.sam3d.predictor import Sam3DPredictor
from medmoe.sam3d.upsample import upsample_logits, upsampled_mask


@dataclass(frozen=True)
class MoEPrediction:
    low_res_logits: Tensor
    mask: Tensor  # (1, 1, S, S, S) bool, computed without the full upsampling
    iou: Tensor
    expert_name: str | None  # the top-1 expert, whether or not it was used
    s_top: float
    gate_probs: Tensor  # (m + 1,): index 0 "no specific expert", then the experts in order
    used_expert: bool

    @cached_property
    def logits(self) -> Tensor:
        """``(1, 1, S, S, S)`` upsampled logits, computed on first use."""
        return upsample_logits(self.low_res_logits, self.mask.shape[-1])


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
        index = int(out.routing.expert[0])
        return MoEPrediction(
            low_res_logits=out.low_res_logits,
            mask=upsampled_mask(out.low_res_logits, self.size),
            iou=out.iou,
            expert_name=self.moe.expert_names[index - 1],
            s_top=float(out.routing.s_top[0]),
            gate_probs=out.gate_probs[0].detach().cpu(),
            used_expert=bool(out.routing.use_expert[0]),
        )
