"""Training samples for experts and the gate: 128^3 crops around targets, with their task index."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from medmoe.data import Sam3DCrop, find_targets, load_label, load_volume, voxel_to_world
from medmoe.errors import InputError


class Sample(NamedTuple):
    key: str  # unique per (case, label, crop, augmentation): the embedding cache key
    image: np.ndarray | None  # (128,128,128) float32, z-scored (None once cached elsewhere)
    label: np.ndarray  # (128,128,128) bool
    task: int  # 0: an original task; i: the task of expert i
    name: str = ""  # the structure's name


def samples_from_dataset(
    root: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    task_of: Callable[[str], int] = lambda name: 0,
    crops_per_target: int = 2,
    jitter_mm: float = 8.0,
    seed: int = 0,
) -> list[Sample]:
    """Crops centred near each target (the centre jittered by up to ``jitter_mm``), seeded."""
    from tqdm.auto import tqdm

    if crops_per_target < 1:
        raise InputError(f"crops_per_target must be >= 1, got {crops_per_target}")
    samples = []
    current = None
    for t in tqdm(find_targets(root, labels=labels), desc="crops", unit="target"):
        if current is None or current[0] != t.case_id:
            current = (t.case_id, load_volume(t.image), load_label(t.label))
        _, vol, lab = current
        gt = lab.array == t.value
        if not gt.any():
            continue
        idx = np.argwhere(gt)
        center = voxel_to_world((idx.min(0) + idx.max(0)) // 2, vol.affine)[0]
        rng = np.random.default_rng([seed, zlib.crc32(t.case_id.encode()), t.value])
        for c in range(crops_per_target):
            offset = rng.uniform(-jitter_mm, jitter_mm, 3) if c else np.zeros(3)
            crop = Sam3DCrop.centered_at(vol, center + offset)
            label = crop.apply_label(gt.astype(np.uint8)) > 0
            if label.sum() < 8:
                continue
            key = f"{t.image}|{t.value}|crop{c}|seed{seed}"
            samples.append(Sample(key, crop.image, label, task_of(t.name), t.name))
    if not samples:
        raise InputError(f"{root}: no usable training crops")
    return samples
