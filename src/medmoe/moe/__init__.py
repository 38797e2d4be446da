"""SAM-Med3D-MoE: task experts on a frozen SAM-Med3D, a gate, and the mask selector."""

from medmoe.data.training import (
    CropDataset,
    LabelStore,
    Sample,
    build_crop_dataset,
    iter_dataset_crops,
    samples_from_dataset,
)
from medmoe.moe.bundle import (
    add_expert,
    load_moe_bundle,
    read_moe_config,
    remove_expert,
    save_moe_bundle,
)
from medmoe.moe.cache import EmbeddingCache
from medmoe.moe.expert import ExpertInfo, load_expert, save_expert
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.model import MoEOutput, MoESam3D
from medmoe.moe.predictor import MoEPrediction, MoEPredictor
from medmoe.moe.selector import (
    WEIGHTINGS,
    Routing,
    expert_weight,
    fuse,
    logit_softmax,
    route,
    select_masks,
    weighting_name,
)
from medmoe.moe.train import prepare_crops, train_expert, train_moe
from medmoe.moe.train_config import ExpertTrainConfig, MoETrainConfig
from medmoe.moe.validate import choose_tau, routing_accuracy

__all__ = [
    "CropDataset",
    "LabelStore",
    "build_crop_dataset",
    "iter_dataset_crops",
    "prepare_crops",
    "routing_accuracy",
    "EmbeddingCache",
    "ExpertInfo",
    "ExpertTrainConfig",
    "Gate",
    "GateConfig",
    "MoEOutput",
    "MoEPrediction",
    "MoEPredictor",
    "MoESam3D",
    "MoETrainConfig",
    "Routing",
    "Sample",
    "WEIGHTINGS",
    "add_expert",
    "choose_tau",
    "expert_weight",
    "fuse",
    "load_expert",
    "load_moe_bundle",
    "logit_softmax",
    "read_moe_config",
    "remove_expert",
    "route",
    "samples_from_dataset",
    "save_expert",
    "save_moe_bundle",
    "select_masks",
    "train_expert",
    "train_moe",
    "weighting_name",
]
