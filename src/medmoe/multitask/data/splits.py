"""Fundus splits: ``train``, ``val`` and ``test`` of IDRiD or of the synthetic data set.

- **IDRiD**: ``train`` is the official training set less every ``VAL_EVERY``-th image (sorted by
  name), which forms ``val``; ``test`` is the official test set (``b. Testing Set``).
- **Synthetic**: each split is drawn from its own seed, :func:`split_seed`: ``3 * seed + k``
  with k = 0, 1, 2 for train, val, test. The three residues modulo 3 never meet, so no
  combination of ``--seed`` values evaluates on another split's images.
"""

from __future__ import annotations

import os

import numpy as np

from medmoe.errors import InputError
from medmoe.multitask.data.datasets import FundusData, GradingSet, SegmentationSet
from medmoe.multitask.data.idrid import grading_samples, segmentation_samples
from medmoe.multitask.data.synthetic import synth_fundus

SPLITS = ("train", "val", "test")
VAL_EVERY = 10  # IDRiD: every 10th training image (sorted by name) is held out for validation


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
