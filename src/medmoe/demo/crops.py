"""128^3 crops of the two subjects, each centred near one structure.

Every crop's centre is the structure's bounding-box centre moved by up to ``jitter_mm`` per axis
(uniformly), in training and in evaluation, so neither the structure's position in the crop nor
the crop's position in the head identifies the task. Subject A's crops are also augmented: the crop
grid is rotated (up to 0.15 rad per axis) and scaled (0.9-1.1), so image and label are resampled
once, straight from the template; then a left-right flip, a bias field, gamma and noise. (numpy,
not MONAI's ``RandAffine``: that resamples a second time and takes 1.5 s a crop on this CPU.)
Subject B's crops are not augmented: they are the second brain as it is. Crop ``i`` of a structure draws from the seed
``(seed, split, subject, value, i)``; training and evaluation use different split seeds. Crops
are cached as compressed ``.npz`` files (float16 image, bit-packed label), so re-runs skip this.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from medmoe.data.atlas import Atlas
from medmoe.data.augment import SIZE, crop_grid, intensity
from medmoe.data.crop import DEFAULT_SPACING as SPACING
from medmoe.data.crop import resample, zscore_foreground
from medmoe.data.prompts import voxel_to_world
from medmoe.utils.files import atomic_write

# "val": validation crops for choosing the pretraining length (benchmarks/demo_pretrain_steps.py),
# never trained on and never in the report.
SPLIT_SEEDS = {"train": 1000, "eval": 2000, "val": 3000}
SUBJECT_SEEDS = {"A": 0, "B": 1}
MIN_VOXELS = 27


class Crop(NamedTuple):
    key: str  # unique per (subject, split, structure, index, seed): the embedding cache key
    image: np.ndarray  # (128, 128, 128) float32, z-scored
    label: np.ndarray  # (128, 128, 128) bool
    task: int  # 0: an other structure; i: the structure of group (expert) i
    name: str  # the structure's name
    subject: str  # "A" or "B"


def crop_seed(*, seed: int, split: str, subject: str, value: int, index: int) -> list[int]:
    return [seed, SPLIT_SEEDS[split], SUBJECT_SEEDS[subject], value, index]


def jittered_centre(atlas: Atlas, value: int, rng: np.random.Generator, jitter_mm: float):
    """The structure's bounding-box centre in world mm, moved by U(-jitter, jitter) per axis."""
    idx = np.argwhere(atlas.labels.array == value)
    centre = voxel_to_world((idx.min(0) + idx.max(0)) / 2, atlas.labels.affine)[0]
    return centre + rng.uniform(-jitter_mm, jitter_mm, 3)


def _build(
    atlas: Atlas,
    value: int,
    *,
    rng: np.random.Generator,
    jitter_mm: float,
    augment: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One crop: image and label resampled once onto a jittered (and, with ``augment``, rotated
    and scaled) grid; then, with ``augment``, a left-right flip and intensity changes."""
    gt = (atlas.labels.array == value).astype(np.uint8)
    for _ in range(10):  # a jitter that leaves too little of the structure is drawn again
        centre = jittered_centre(atlas, value, rng, jitter_mm)
        grid = crop_grid(centre, rng=rng if augment else None, spacing=SPACING)
        label = resample(gt, atlas.labels.affine, (SIZE,) * 3, grid, order=0) > 0.5
        if label.sum() >= MIN_VOXELS:
            break
    image = resample(atlas.t1.array, atlas.t1.affine, (SIZE,) * 3, grid, order=1)
    if augment:
        if rng.random() < 0.5:  # left-right (the crop's first axis is R)
            image, label = image[::-1].copy(), label[::-1].copy()
        image = intensity(image, rng)
    return zscore_foreground(image), label


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        image = z["image"].astype(np.float32)
        label = np.unpackbits(z["label"])[: SIZE**3].reshape((SIZE,) * 3).astype(bool)
    return image, label


def make_crops(
    atlas: Atlas,
    jobs: list[tuple[int, int, int]],
    *,
    subject: str,
    split: str,
    jitter_mm: float,
    cache_dir: Path,
    seed: int = 0,
) -> list[Crop]:
    """One crop per job ``(value, index, task)``; Subject A's are augmented; cached on disk."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for value, i, task in tqdm(jobs, desc=f"{subject} {split} crops", unit="crop", leave=False):
        path = cache_dir / f"{subject}_{split}_{value}_{i}.npz"
        key = f"demo|{subject}|{split}|{value}|{i}|{seed}|{jitter_mm}"
        if path.is_file():
            image, label = _load(path)
        else:
            rng = np.random.default_rng(
                crop_seed(seed=seed, split=split, subject=subject, value=value, index=i)
            )
            image, label = _build(
                atlas, value, rng=rng, jitter_mm=jitter_mm, augment=subject == "A"
            )
            with atomic_write(path) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, image=image.astype(np.float16), label=np.packbits(label))
            image = image.astype(np.float16).astype(np.float32)
        out.append(Crop(key, image, label, task, atlas.names.get(value, str(value)), subject))
    return out
