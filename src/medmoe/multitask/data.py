"""Fundus data: the splits, the torch datasets, image normalisation and lesion-mask resizing.

A split is a :class:`FundusData`: a :class:`GradingSet` (photographs with a DR grade and a DME
risk) and a :class:`SegmentationSet` (other photographs with five lesion masks); in IDRiD the two
are different photographs, so a sample carries grades or masks, never both. Both sets are
``torch.utils.data.Dataset``\\ s of ``(3, H, W)`` float32 images in [0, 1] (not normalised: the
model's :class:`~medmoe.multitask.model.MultiTaskConfig` holds the mean/std, applied on the
device by :func:`normalize`). Synthetic sets hold their few arrays in memory; IDRiD sets read and
resize each photograph when a batch needs it.

Splits:
- **IDRiD**: ``train`` is the official training set less every ``VAL_EVERY``-th image (sorted by
  name), which forms ``val``; ``test`` is the official test set (``b. Testing Set``).
- **Synthetic**: each split is drawn from its own seed, :func:`split_seed`: ``3 * seed + k``
  with k = 0, 1, 2 for train, val, test. The three residues modulo 3 never meet, so no
  combination of ``--seed`` values evaluates on another split's images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from medmoe.errors import InputError

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_EVERY = 10  # IDRiD: every 10th training image (sorted by name) is held out for validation


def normalize(
    images: Tensor | np.ndarray,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """``(B, 3, H, W)`` images in [0, 1] -> normalised float32, on the images' own device."""
    x = torch.as_tensor(images, dtype=torch.float32)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    return (x - m) / s


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask ``(H, W)`` resized to ``size`` = (height, width), keeping a pixel positive if
    any source pixel under it is (adaptive max pooling: "area > 0"). Nearest neighbour would keep
    only one source pixel per output pixel and erase 1-2 pixel microaneurysms when downsizing.
    Written with torch's pooling because MONAI's ``Resize`` has no max mode."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    fy, fx = -(-size[0] // m.shape[-2]), -(-size[1] // m.shape[-1])
    if fy > 1 or fx > 1:  # growing along an axis: repeat whole pixels first, then pool
        m = m.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)
    out = F.adaptive_max_pool2d(m, size)
    return out[0, 0].numpy() > 0


class GradingSet(Dataset):
    """Photographs with grades. ``images``: a ``(N, 3, H, W)`` array, or a list of files read
    and resized to ``size`` on access."""

    def __init__(
        self,
        *,
        images: np.ndarray | Sequence[Path],
        dr: np.ndarray,
        dme: np.ndarray,
        size: tuple[int, int],
    ) -> None:
        self.images, self.size = images, tuple(size)
        self.dr, self.dme = np.asarray(dr, np.int64), np.asarray(dme, np.int64)
        if not len(self.images) == len(self.dr) == len(self.dme):
            raise InputError("grading set: images, DR grades and DME risks differ in number")

    def __len__(self) -> int:
        return len(self.dr)

    def image(self, i: int) -> np.ndarray:
        if isinstance(self.images, np.ndarray):
            return self.images[i]
        from medmoe.multitask.idrid import load_rgb

        return load_rgb(self.images[i], self.size)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.image(i), np.float32)),
            "dr": int(self.dr[i]),
            "dme": int(self.dme[i]),
        }


class SegmentationSet(Dataset):
    """Photographs with lesion masks ``(5, H, W)`` bool. ``images``/``masks``: arrays, or (IDRiD)
    ``images`` a list of :class:`~medmoe.multitask.idrid.SegSample` and ``masks`` None."""

    def __init__(
        self, *, images: np.ndarray | Sequence, masks: np.ndarray | None, size: tuple[int, int]
    ) -> None:
        self.images, self.masks, self.size = images, masks, tuple(size)
        if masks is not None and len(masks) != len(images):
            raise InputError("segmentation set: images and masks differ in number")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.masks is not None:
            return self.images[i], self.masks[i]
        from medmoe.multitask.idrid import load_masks, load_rgb

        return load_rgb(self.images[i].image, self.size), load_masks(self.images[i], self.size)

    def __getitem__(self, i: int) -> dict:
        image, masks = self.sample(i)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, np.float32)),
            "masks": torch.from_numpy(np.ascontiguousarray(masks, bool)),
        }


class FundusData(NamedTuple):
    grading: GradingSet
    segmentation: SegmentationSet


def split_seed(seed: int, split: str) -> int:
    """The synthetic generator's seed for ``split`` of run ``seed`` (disjoint residues mod 3)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {SPLITS}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    return 3 * seed + SPLITS.index(split)


def synthetic_split(
    *, split: str, seed: int, n_cls: int, n_seg: int, size: tuple[int, int]
) -> FundusData:
    """``split`` of the synthetic data set of run ``seed`` (see :func:`split_seed`)."""
    return synthetic_data(n_cls=n_cls, n_seg=n_seg, size=size, seed=split_seed(seed, split))


def synthetic_data(*, n_cls: int, n_seg: int, size: tuple[int, int], seed: int) -> FundusData:
    """``n_cls`` graded and ``n_seg`` segmented synthetic photographs from one generator seed."""
    from medmoe.multitask.synthetic import synth_fundus

    rng = np.random.default_rng(seed)
    cls = [synth_fundus(rng, size) for _ in range(n_cls)]
    seg = [synth_fundus(rng, size) for _ in range(n_seg)]
    empty = np.zeros((0, 3, *size), np.float32)
    grading = GradingSet(
        images=np.stack([c[0] for c in cls]) if cls else empty,
        dr=np.array([c[2] for c in cls], np.int64),
        dme=np.array([c[3] for c in cls], np.int64),
        size=size,
    )
    segmentation = SegmentationSet(
        images=np.stack([s[0] for s in seg]) if seg else empty,
        masks=np.stack([s[1] for s in seg]) if seg else np.zeros((0, 5, *size), bool),
        size=size,
    )
    return FundusData(grading, segmentation)


def _carve(items: list, split: str) -> list:
    """IDRiD's validation carve-out: every ``VAL_EVERY``-th training item is ``val``."""
    if split == "test":
        return items
    held = [i % VAL_EVERY == VAL_EVERY - 1 for i in range(len(items))]
    return [x for x, h in zip(items, held, strict=True) if h == (split == "val")]


def idrid_data(root: str | os.PathLike, *, split: str, size: tuple[int, int]) -> FundusData:
    """``split`` (train/val/test) of an IDRiD folder; photographs are read when accessed."""
    from medmoe.multitask.idrid import grading_samples, segmentation_samples

    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {SPLITS}")
    official = "test" if split == "test" else "train"
    grades = _carve(grading_samples(root, official), split)
    segs = _carve(segmentation_samples(root, official), split)
    for g in grades:
        if not g.image.is_file():
            raise InputError(f"{root}: missing grading image {g.image}")
    grading = GradingSet(
        images=[g.image for g in grades],
        dr=np.array([g.dr for g in grades], np.int64),
        dme=np.array([g.dme for g in grades], np.int64),
        size=size,
    )
    return FundusData(grading, SegmentationSet(images=segs, masks=None, size=size))


def load_split(
    spec: str, *, split: str, size: tuple[int, int], seed: int = 0, count: int = 64
) -> FundusData:
    """``spec`` is an IDRiD folder or ``"synthetic"`` (``count`` images of each kind)."""
    if spec == "synthetic":
        return synthetic_split(split=split, seed=seed, n_cls=count, n_seg=count, size=size)
    return idrid_data(spec, split=split, size=size)
