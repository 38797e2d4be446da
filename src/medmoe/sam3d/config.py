"""Sizes of the registered SAM-Med3D models. Sizes live here and nowhere else."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Sam3DConfig:
    """Architecture of a SAM-Med3D model (the published ``vit_b_ori`` family)."""

    img_size: int = 128  # side of the cubic input volume, in voxels
    patch_size: int = 16  # ViT patch side; the token grid is img_size // patch_size per axis
    encoder_dim: int = 768  # ViT width
    encoder_depth: int = 12  # number of ViT blocks
    encoder_heads: int = 12  # attention heads per ViT block
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)  # blocks with global attention
    window_size: int = 14  # window of the other blocks (>= the token grid: one padded window)
    prompt_dim: int = 384  # prompt-encoder / mask-decoder width (divisible by 3 and 8)
    mask_in_chans: int = 16  # hidden channels of the mask-prompt downscaling
    decoder_depth: int = 2  # two-way transformer depth
    decoder_heads: int = 8  # two-way transformer heads
    decoder_mlp_dim: int = 2048  # two-way transformer MLP width
    num_multimask_outputs: int = 3  # extra mask tokens (the output uses the first token only)
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    box_embeddings: bool = False  # two extra corner embeddings (point_embeddings.2 / .3)

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of {self.patch_size}")
        if self.window_size and self.window_size < self.grid_size:
            raise ValueError(
                f"window_size {self.window_size} < token grid {self.grid_size}: medmoe implements "
                "the single padded window of the published 128^3 models only"
            )
        if self.prompt_dim % 3 or self.prompt_dim % 8:
            raise ValueError(f"prompt_dim {self.prompt_dim} must be divisible by 3 and by 8")
        if self.encoder_dim % self.encoder_heads:
            raise ValueError("encoder_dim must be divisible by encoder_heads")

    @property
    def grid_size(self) -> int:
        """Token grid side of the image encoder (8 for the published model)."""
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution logits (32 for the published model)."""
        return self.grid_size * 4

    def describe(self) -> str:
        return (
            f"ViT {self.encoder_dim}x{self.encoder_depth} ({self.encoder_heads} heads), "
            f"input {self.img_size}^3, prompt dim {self.prompt_dim}"
            + (", box prompts" if self.box_embeddings else "")
        )

    def to_dict(self) -> dict:
        from medmoe.utils.config import config_to_dict

        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, *, what: str = "SAM-Med3D config") -> Sam3DConfig:
        from medmoe.utils.config import config_from_dict

        return config_from_dict(cls, data, what=what)


VIT_B_ORI = Sam3DConfig()

# The registry: names users pass to ``build_sam3d``.
SAM3D_CONFIGS: dict[str, Sam3DConfig] = {
    # The published SAM-Med3D (sam_med3d.pth, sam_med3d_turbo.pth).
    "vit_b_ori": VIT_B_ORI,
    # The same, with the two box-corner embeddings the box-capable published variants carry.
    "vit_b_ori_box": dataclasses.replace(VIT_B_ORI, box_embeddings=True),
    # A small model with the same structure (including the padded 14^3 window over the 8^3
    # grid), for tests and CPU demos. Box-capable so that the demo can use box prompts.
    "tiny": Sam3DConfig(
        encoder_dim=96,
        encoder_depth=4,
        encoder_heads=4,
        global_attn_indexes=(1, 3),
        prompt_dim=96,
        mask_in_chans=8,
        decoder_heads=4,
        decoder_mlp_dim=256,
        iou_head_hidden_dim=64,
        box_embeddings=True,
    ),
}
