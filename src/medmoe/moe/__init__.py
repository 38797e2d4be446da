"""SAM-Med3D-MoE: task experts on a frozen SAM-Med3D, a gate, and the mask selector."""

from medmoe.moe.bundle import (
    add_expert,
    load_moe_bundle,
    read_moe_config,
    remove_expert,
    save_moe_bundle,
)
from medmoe.moe.cache import EmbeddingCache
from medmoe.moe.data import Sample, samples_from_dataset
from medmoe.moe.expert import ExpertInfo, load_expert, save_expert
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.model import MoEOutput, MoESam3D
from medmoe.moe.predictor import MoEPrediction, MoEPredictor
from medmoe.moe.selector import Routing, expert_weight, route, select_masks
from medmoe.moe.train import ExpertTrainConfig, MoETrainConfig, choose_tau, train_expert, train_moe

__all__ = [
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
    "add_expert",
    "choose_tau",
    "expert_weight",
    "load_expert",
    "load_moe_bundle",
    "read_moe_config",
    "remove_expert",
    "route",
    "samples_from_dataset",
    "save_expert",
    "save_moe_bundle",
    "select_masks",
    "train_expert",
    "train_moe",
]
