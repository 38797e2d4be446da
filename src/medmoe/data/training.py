"""Training crops for experts and the gate: 128^3 crops around targets, with their task index.

Producers (a dataset on disk, the demo's atlas) yield :class:`Sample` crops one at a time;
:func:`build_crop_dataset` encodes each once into the embedding cache and stores its label on
disk, so training keeps only small records in memory and reads a crop when a batch needs it
(:class:`CropDataset`): memory is bounded by the batch, not by the dataset.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch.utils.data import Dataset

from medmoe.data.crop import Sam3DCrop
from medmoe.data.datasets import find_targets
from medmoe.data.io import load_label, load_volume
from medmoe.data.prompts import voxel_to_world
from medmoe.errors import InputError


class Sample(NamedTuple):
    key: str  # unique per (case, label, crop, augmentation): the embedding cache key
    image: np.ndarray | None  # (128,128,128) float32, z-scored (None once cached elsewhere)
    label: np.ndarray  # (128,128,128) bool
    task: int  # 0: an original task; i: the task of expert i
    name: str = ""  # the structure's name


def iter_dataset_crops(
    root: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    task_of: Callable[[str], int] = lambda name: 0,
    crops_per_target: int = 2,
    jitter_mm: float = 8.0,
    seed: int = 0,
) -> Iterator[Sample]:
    """Crops centred near each target (the centre jittered by up to ``jitter_mm``), seeded,
    yielded one at a time (one case's volume is held at once)."""
    if crops_per_target < 1:
        raise InputError(f"crops_per_target must be >= 1, got {crops_per_target}")
    found = 0
    current = None
    for t in find_targets(root, labels=labels):
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
            found += 1
            key = f"{t.image}|{t.value}|crop{c}|seed{seed}"
            yield Sample(key, crop.image, label, task_of(t.name), t.name)
    if not found:
        raise InputError(f"{root}: no usable training crops")


def samples_from_dataset(root: str | os.PathLike, **kwargs) -> list[Sample]:
    """Every crop of :func:`iter_dataset_crops` in a list (small datasets, tests)."""
    return list(iter_dataset_crops(root, **kwargs))


class CropRecord(NamedTuple):
    """What training keeps in memory of a crop: its image lives in the embedding cache (as the
    embedding), its label in the :class:`LabelStore`."""

    key: str
    task: int
    name: str


class LabelStore:
    """Crop labels on disk, bit-packed (a 128^3 label takes 256 KiB), one safetensors file each."""

    def __init__(self, *, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, label: np.ndarray) -> None:
        from medmoe.utils.files import atomic_write

        label = np.asarray(label, dtype=bool)
        packed = {"bits": np.packbits(label.reshape(-1)), "shape": np.array(label.shape)}
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(key)) as tmp:
            save_file(packed, str(tmp), metadata={"key": key})

    def get(self, key: str) -> np.ndarray:
        try:
            d = load_file(str(self.path(key)))
        except (OSError, ValueError, RuntimeError) as err:
            raise InputError(f"the label of crop {key!r} is missing or unreadable: {err}") from None
        shape = tuple(int(v) for v in d["shape"])
        return np.unpackbits(d["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)


class CropDataset(Dataset):
    """Lazy training crops. Item ``i`` is ``{"key", "embedding": (C, n, n, n) float32 CPU
    tensor, "label": (128,128,128) bool array, "task", "name"}``, read from disk when asked."""

    def __init__(self, *, records: Sequence[CropRecord], labels: LabelStore, cache) -> None:
        self.records = list(records)
        self.labels = labels
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        return {
            "key": r.key,
            "embedding": self.cache.get(r.key, None)[0],
            "label": self.labels.get(r.key),
            "task": r.task,
            "name": r.name,
        }

    def subset(self, indices: Iterable[int]) -> CropDataset:
        return CropDataset(
            records=[self.records[i] for i in indices], labels=self.labels, cache=self.cache
        )


def build_crop_dataset(
    samples: Iterable[Sample], *, cache, labels: LabelStore, rank: int = 0, world_size: int = 1
) -> CropDataset:
    """Encode every crop once (into ``cache``) and store its label; keep only the records.

    Under torchrun, process ``rank`` encodes every ``world_size``-th crop; callers wait at a
    barrier before training reads the other processes' crops.
    """
    records = []
    for i, s in enumerate(samples):
        records.append(CropRecord(s.key, int(s.task), s.name))
        if i % world_size != rank:
            continue
        if not labels.has(s.key):
            labels.put(s.key, s.label)
        if not cache.has(s.key):
            cache.get(s.key, s.image)
    if not records:
        raise InputError("no training crops")
    return CropDataset(records=records, labels=labels, cache=cache)


class InMemoryCrops(Dataset):
    """Crops held in memory, images included (pretraining the encoder needs the images; the
    demo's few hundred crops fit). Item ``i`` is ``{"key", "image": (128,128,128) float32
    tensor, "label", "task", "name"}``."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        image = torch.as_tensor(np.asarray(s.image, dtype=np.float32))
        return {"key": s.key, "image": image, "label": s.label, "task": s.task, "name": s.name}
