"""Pretraining crops made on the fly, in DataLoader workers: one brain turned into many.

Sample ``i`` of epoch ``e`` is a 128^3, 1.5 mm crop around structure ``i % n``, drawn from the
seed ``(seed, e, i)``: its centre is the structure's box centre moved by up to ``jitter_mm`` per
axis, its grid rotated and scaled (:func:`medmoe.data.augment.crop_grid`), image and mask
resampled once from the template and the structure's own atlas grid, then flipped left-right
and given a bias field, gamma and noise (:func:`medmoe.data.augment.intensity`). A resumed run
draws the same crops as an uninterrupted one.

Validation crops (:func:`validation_crops`) use the seeds of another split and no geometric
augmentation beyond the jitter, and nothing trains on them.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from medmoe.data.augment import SIZE, crop_grid, intensity
from medmoe.data.crop import DEFAULT_SPACING, resample, zscore_foreground
from medmoe.data.volume import Volume
from medmoe.pretrain.structures import Structure

MIN_VOXELS = 27  # a crop must hold at least this much of its structure
VAL_SPLIT = 7000  # seed offset of the validation crops (training crops use the epoch)


class CropSpec(NamedTuple):
    jitter_mm: float = 20.0
    augment: bool = True


TRAIN_SPEC = CropSpec()


def _centre(s: Structure) -> np.ndarray:
    mid = (np.array(s.mask.shape) - 1) / 2
    return s.affine[:3, :3] @ mid + s.affine[:3, 3]


def make_crop(
    t1: Volume, s: Structure, rng: np.random.Generator, spec: CropSpec
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image float32 z-scored, label bool)`` crop of structure ``s``."""
    for _ in range(10):  # a jitter that leaves too little of the structure is drawn again
        centre = _centre(s) + rng.uniform(-spec.jitter_mm, spec.jitter_mm, 3)
        grid = crop_grid(centre, rng=rng if spec.augment else None, spacing=DEFAULT_SPACING)
        label = resample(s.mask, s.affine, (SIZE,) * 3, grid, order=0) > 0.5
        if label.sum() >= MIN_VOXELS:
            break
    image = resample(t1.array, t1.affine, (SIZE,) * 3, grid, order=1)
    if spec.augment:
        if rng.random() < 0.5:  # left-right (the crop's first axis is R)
            image, label = image[::-1].copy(), label[::-1].copy()
        image = intensity(image, rng)
    return zscore_foreground(image), label


class BrainCrops(Dataset):
    """``crops_per_structure`` crops of every structure per epoch, made when read."""

    def __init__(
        self,
        *,
        t1: Volume,
        structures: list[Structure],
        crops_per_structure: int = 1,
        seed: int = 0,
        spec: CropSpec = TRAIN_SPEC,
    ) -> None:
        self.t1 = Volume(np.asarray(t1.array, dtype=np.float32), t1.affine)
        self.structures = structures
        self.crops_per_structure = crops_per_structure
        self.seed = seed
        self.spec = spec
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.structures) * self.crops_per_structure

    def __getitem__(self, i: int) -> dict:
        s = self.structures[i % len(self.structures)]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, label = make_crop(self.t1, s, rng, self.spec)
        return {"image": torch.from_numpy(image), "label": label, "key": s.key}


def validation_crops(
    t1: Volume, structures: list[Structure], *, per_structure: int, seed: int
) -> list[dict]:
    """Held-out crops (another split's seeds; jitter only), built once."""
    out = []
    for s in structures:
        for k in range(per_structure):
            rng = np.random.default_rng([seed, VAL_SPLIT, k, hash_key(s.key)])
            image, label = make_crop(t1, s, rng, CropSpec(augment=False))
            out.append(
                {"image": torch.from_numpy(image), "label": label, "key": s.key, "name": s.name}
            )
    return out


def hash_key(key: str) -> int:
    """A stable integer for a structure key (Python's ``hash`` is salted per process)."""
    return zlib.crc32(key.encode())
