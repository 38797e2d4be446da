"""``Sam3D``: the image encoder, prompt encoder and mask decoder of SAM-Med3D."""

from __future__ import annotations

from torch import Tensor, nn

from medmoe.sam3d.config import Sam3DConfig
from medmoe.sam3d.image_encoder import ImageEncoderViT3D
from medmoe.sam3d.mask_decoder import MaskDecoder3D
from medmoe.sam3d.prompt_encoder import PromptEncoder3D
from medmoe.sam3d.upsample import upsample_logits


class Sam3D(nn.Module):
    """Holds the three published sub-modules under their published names.

    The model does no pre- or post-processing; :class:`medmoe.sam3d.Sam3DPredictor` does.
    """

    mask_threshold: float = 0.0

    def __init__(
        self,
        *,
        image_encoder: ImageEncoderViT3D,
        prompt_encoder: PromptEncoder3D,
        mask_decoder: MaskDecoder3D,
        config: Sam3DConfig,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config

    def decode(
        self,
        image_embeddings: Tensor,
        *,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        image_pe: Tensor | None = None,
        decoder: MaskDecoder3D | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Prompt encoder + mask decoder on a precomputed embedding: ``(low_res_logits, iou)``.

        ``decoder`` replaces the model's own mask decoder (used by the MoE's task experts).
        """
        sparse, dense = self.prompt_encoder(points, boxes, mask_input)
        if image_pe is None:
            image_pe = self.prompt_encoder.get_dense_pe()
        return (decoder or self.mask_decoder)(image_embeddings, image_pe, sparse, dense)

    def upsample(self, low_res_logits: Tensor) -> Tensor:
        """Trilinear upsampling of low-resolution logits to the input size."""
        return upsample_logits(low_res_logits, self.config.img_size)

    def forward(
        self,
        volume: Tensor,
        *,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
    ) -> Tensor:
        """End to end: ``(B, 1, S, S, S)`` volume -> ``(B, 1, S/4, S/4, S/4)`` low-res logits."""
        return self.decode(
            self.image_encoder(volume), points=points, boxes=boxes, mask_input=mask_input
        )[0]
