"""``build_sam3d``: build a registered SAM-Med3D model, optionally loading a checkpoint."""

from __future__ import annotations

import torch

from medmoe.sam3d.config import Sam3DConfig
from medmoe.sam3d.image_encoder import ImageEncoderViT3D
from medmoe.sam3d.mask_decoder import MaskDecoder3D
from medmoe.sam3d.prompt_encoder import PromptEncoder3D
from medmoe.sam3d.sam import Sam3D


def build_mask_decoder(config: Sam3DConfig) -> MaskDecoder3D:
    """A fresh mask decoder of ``config``'s size (the architecture of every task expert)."""
    return MaskDecoder3D(
        transformer_dim=config.prompt_dim,
        transformer_depth=config.decoder_depth,
        transformer_heads=config.decoder_heads,
        transformer_mlp_dim=config.decoder_mlp_dim,
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )


def build_from_config(config: Sam3DConfig) -> Sam3D:
    """A randomly initialised :class:`Sam3D` of the given architecture."""
    grid = config.grid_size
    return Sam3D(
        image_encoder=ImageEncoderViT3D(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_heads,
            out_chans=config.prompt_dim,
            global_attn_indexes=config.global_attn_indexes,
            window_size=config.window_size,
        ),
        prompt_encoder=PromptEncoder3D(
            embed_dim=config.prompt_dim,
            image_embedding_size=(grid, grid, grid),
            input_image_size=(config.img_size,) * 3,
            mask_in_chans=config.mask_in_chans,
            box_embeddings=config.box_embeddings,
        ),
        mask_decoder=build_mask_decoder(config),
        config=config,
    )


def meta_state_shapes(config: Sam3DConfig) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of an architecture, computed without allocating memory."""
    with torch.device("meta"):
        model = build_from_config(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
