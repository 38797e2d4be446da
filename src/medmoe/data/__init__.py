"""From a scan on disk to the model's input and back: I/O, the reversible crop, prompts, datasets."""

from medmoe.data.crop import Sam3DCrop
from medmoe.data.datasets import Target, find_targets, write_nnunet_dataset
from medmoe.data.io import load_label, load_volume, save_volume
from medmoe.data.prompts import voxel_to_world, world_to_voxel
from medmoe.data.volume import Volume, voxel_spacing

__all__ = [
    "Sam3DCrop",
    "Target",
    "Volume",
    "find_targets",
    "load_label",
    "load_volume",
    "save_volume",
    "voxel_spacing",
    "voxel_to_world",
    "world_to_voxel",
    "write_nnunet_dataset",
]
