"""Training and guard crops from the datastore's scans, without the original training data:

- **label crops**: 128^3 crops around each structure of a submitted label, its gate class from
  the :class:`~medmoe.continual.selection.Plan` (the new task, an old expert's, or "other");
- **replay crops**: clicks placed in the scan (away from the structure being learnt), each
  answered by the serving bundle itself; its mask becomes the crop's label and the class it
  routed to (an old expert, or 0 when the general model answered) the crop's gate class. They
  stand for the old tasks the new gate must keep routing, and they need no stored data.

Crops are :class:`medmoe.data.training.Sample` records, encoded once into the embedding cache.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
import torch

from medmoe.continual.config import CaseSpec, ContinualConfig
from medmoe.continual.guard import REPLAY
from medmoe.continual.selection import OTHER, Plan
from medmoe.data import Sam3DCrop, load_label, load_volume
from medmoe.data.prompts import voxel_to_world
from medmoe.data.training import Sample

JITTER_MM = 8.0
MIN_LABEL_VOXELS = 8  # a crop whose structure is smaller than this in the crop is dropped


def replay_points(
    image: np.ndarray, *, avoid: np.ndarray | None, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``(k, 3)`` voxel indices, ``k <= n``, drawn without replacement among the voxels
    brighter than the scan's median (the body, not the air around it) and outside ``avoid``."""
    inside = image > np.median(image)
    if avoid is not None:
        inside &= ~avoid
    flat = np.flatnonzero(inside)
    if n <= 0 or flat.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    pick = rng.choice(flat, size=min(n, flat.size), replace=False)
    return np.stack(np.unravel_index(np.sort(pick), image.shape), axis=1).astype(np.int64)


def _rng(config: ContinualConfig, case: CaseSpec, salt: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, zlib.crc32(case.image_id.encode()), salt])


def label_samples(
    case: CaseSpec, vol, label: np.ndarray, plan: Plan, config: ContinualConfig
) -> Iterator[Sample]:
    """Crops around each named structure of the case's label (the first centred on its
    bounding box, the others jittered by up to 8 mm, seeded)."""
    for name, value in sorted(case.values.items()):
        gt = label == value
        if not gt.any():
            continue
        idx = np.argwhere(gt)
        center = voxel_to_world((idx.min(0) + idx.max(0)) // 2, vol.affine)[0]
        rng = _rng(config, case, value)
        for c in range(config.crops_per_label):
            offset = rng.uniform(-JITTER_MM, JITTER_MM, 3) if c else np.zeros(3)
            crop = Sam3DCrop.centered_at(vol, center + offset)
            crop_label = crop.apply_label(gt.astype(np.uint8)) > 0
            if crop_label.sum() < MIN_LABEL_VOXELS:
                continue
            key = f"{case.image_id}|{name}|crop{c}|seed{config.seed}"
            yield Sample(key, crop.image, crop_label, plan.task_of(name), name)


@torch.no_grad()
def replay_samples(
    case: CaseSpec,
    vol,
    avoid: np.ndarray | None,
    *,
    serving,
    plan: Plan,
    cache,
    config: ContinualConfig,
    device: torch.device,
) -> Iterator[Sample]:
    """The serving bundle's answers to clicks placed in the scan, as crops (see the module
    docstring). A crop routed to the expert being updated is dropped (its old masks are not
    what the update is to learn), as are masks under ``replay_min_voxels`` or over half the
    crop."""
    from medmoe.moe.validate import mask_of

    size = serving.base.config.img_size
    points = replay_points(
        vol.array, avoid=avoid, n=config.replay_clicks, rng=_rng(config, case, 0)
    )
    for p in points:
        crop = Sam3DCrop.around_point(vol, p)
        key = f"{case.image_id}|replay|{'-'.join(map(str, p.tolist()))}|seed{config.seed}"
        emb = cache.get(key, crop.image)
        click = crop.to_crop_coords(p[None].astype(np.float64))
        pts = torch.as_tensor(click, dtype=torch.float32, device=device).reshape(1, 1, 3)
        lab = torch.ones(1, 1, dtype=torch.long, device=device)
        out = serving.decode(emb.to(device), points=(pts, lab), tau=serving.tau)
        mask = mask_of(out.low_res_logits, size)
        if not config.replay_min_voxels <= mask.sum() <= mask.size // 2:
            continue
        task = OTHER
        if bool(out.routing.use_expert[0]):
            name = serving.expert_names[int(out.routing.expert[0]) - 1]
            task = plan.experts.index(name) + 1
            if task == plan.new_task:
                continue
        yield Sample(key, None, mask, task, REPLAY)


def case_samples(
    case: CaseSpec, *, serving, plan: Plan, cache, config: ContinualConfig, device
) -> Iterator[Sample]:
    """Every crop of one scan: its label crops, then its replay crops (one volume in memory)."""
    vol = load_volume(case.image)
    avoid = None
    if case.label is not None:
        label = load_label(case.label).array
        if label.shape != vol.array.shape:
            return  # a label on another grid: nothing to learn from it
        yield from label_samples(case, vol, label, plan, config)
        value = case.values.get(plan.label)
        avoid = label == value if value is not None else None
    yield from replay_samples(
        case, vol, avoid, serving=serving, plan=plan, cache=cache, config=config, device=device
    )
