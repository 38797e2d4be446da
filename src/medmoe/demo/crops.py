"""Augmented 128^3 crops of the MNI152 template, each centred on one structure.

Augmentation uses MONAI: a random affine + elastic deformation (one resampling), a bias field,
Gaussian noise, contrast (gamma) and left-right flips. Crop ``i`` of a structure draws from the
seed ``(split_seed, value, i)``; training and evaluation use different split seeds, so their
augmentations never coincide. Crops are cached as compressed ``.npz`` files (float16 image, bit
-packed label) so that re-runs skip this stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medmoe.data.atlas import Atlas
from medmoe.data.crop import Sam3DCrop, zscore_foreground
from medmoe.moe.data import Sample
from medmoe.utils.files import atomic_write

SPLIT_SEEDS = {"train": 1000, "eval": 2000}


def _augment(
    image: np.ndarray, label: np.ndarray, *, seed: int, elastic: bool
) -> tuple[np.ndarray, np.ndarray]:
    import monai.transforms as mt

    keys = ["image", "label"]
    spatial = (
        mt.Rand3DElasticd(
            keys,
            prob=1.0,
            sigma_range=(6, 8),
            magnitude_range=(40, 80),
            rotate_range=(0.15, 0.15, 0.15),
            scale_range=(0.1, 0.1, 0.1),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
        if elastic
        else mt.RandAffined(
            keys,
            prob=1.0,
            rotate_range=(0.15, 0.15, 0.15),
            scale_range=(0.1, 0.1, 0.1),
            translate_range=(6, 6, 6),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    )
    chain = mt.Compose(
        [
            spatial,
            mt.RandFlipd(keys, prob=0.5, spatial_axis=0),
            mt.RandBiasFieldd(["image"], prob=0.5, coeff_range=(0.0, 0.3)),
            mt.RandAdjustContrastd(["image"], prob=0.5, gamma=(0.7, 1.5)),
            mt.RandGaussianNoised(["image"], prob=0.5, std=0.05),
        ]
    )
    chain.set_random_state(seed=seed)
    # intensities to [0, 1] first, so gamma and noise act on a known range
    lo, hi = float(image.min()), float(image.max())
    d = chain(
        {"image": ((image - lo) / (hi - lo + 1e-8))[None], "label": label[None].astype(np.float32)}
    )
    img = np.asarray(d["image"][0], dtype=np.float32)
    img[img < 0] = 0
    return zscore_foreground(img), np.asarray(d["label"][0]) > 0.5


def make_crops(
    atlas: Atlas,
    values: tuple[int, ...],
    *,
    split: str,
    count: int,
    task: int,
    elastic: bool,
    cache_dir: Path,
    seed: int = 0,
) -> list[Sample]:
    """``count`` augmented crops per structure; cached under ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    jobs = [(v, i) for v in values for i in range(count)]
    for value, i in tqdm(jobs, desc=f"{split} crops (task {task})", unit="crop", leave=False):
        path = cache_dir / f"{split}_{value}_{i}.npz"
        name = atlas.names.get(value, str(value))
        key = f"atlas|{split}|{value}|{i}|{seed}"
        if path.is_file():
            with np.load(path) as z:
                image = z["image"].astype(np.float32)
                label = np.unpackbits(z["label"])[: 128**3].reshape((128,) * 3).astype(bool)
            out.append(Sample(key, image, label, task, name))
            continue
        gt = atlas.labels.array == value
        crop = Sam3DCrop.around_mask(atlas.t1, gt)
        raw = crop.image
        label = crop.apply_label(gt.astype(np.uint8)) > 0
        image, label = _augment(
            raw, label, seed=SPLIT_SEEDS[split] + 7919 * seed + 101 * value + i, elastic=elastic
        )
        if label.sum() < 27:  # the augmentation pushed it out: keep the unaugmented crop
            image, label = raw, crop.apply_label(gt.astype(np.uint8)) > 0
        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, image=image.astype(np.float16), label=np.packbits(label))
        out.append(Sample(key, image.astype(np.float16).astype(np.float32), label, task, name))
    return out


def write_index(path: Path, samples: list[Sample]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(
            json.dumps([{"key": s.key, "name": s.name, "task": s.task} for s in samples], indent=1)
        )
