"""SAM-Med3D: a faithful, fast implementation that loads the published checkpoints."""

from medmoe.sam3d.build import build_from_config, build_mask_decoder
from medmoe.sam3d.checkpoint import load_sam3d_checkpoint, save_sam3d_checkpoint
from medmoe.sam3d.config import SAM3D_CONFIGS, Sam3DConfig
from medmoe.sam3d.mask_decoder import MaskDecoder3D
from medmoe.sam3d.predictor import Sam3DPrediction, Sam3DPredictor
from medmoe.sam3d.registry import build_sam3d, load_pretrained, load_sam3d
from medmoe.sam3d.sam import Sam3D

__all__ = [
    "SAM3D_CONFIGS",
    "MaskDecoder3D",
    "Sam3D",
    "Sam3DConfig",
    "Sam3DPrediction",
    "Sam3DPredictor",
    "build_from_config",
    "build_mask_decoder",
    "build_sam3d",
    "load_pretrained",
    "load_sam3d",
    "load_sam3d_checkpoint",
    "save_sam3d_checkpoint",
]
