"""Synthetic two-group data for MoE tests: original tasks (spheres) and a new task (cubes)."""

from __future__ import annotations

import numpy as np

from medmoe.moe import Sample


def shape_sample(kind: str, index: int, *, seed: int = 0, size: int = 128) -> Sample:
    rng = np.random.default_rng([seed, index, 0 if kind == "sphere" else 1])
    grid = np.indices((size,) * 3).transpose(1, 2, 3, 0) - size / 2 + rng.uniform(-6, 6, 3)
    r = rng.uniform(14, 22)
    if kind == "sphere":
        label = np.linalg.norm(grid, axis=-1) <= r
        image = rng.normal(0, 0.3, (size,) * 3) + 2.0 * label
    else:  # new task: a dark cube on a striped background
        label = (np.abs(grid) <= r * 0.8).all(-1)
        stripes = np.sin(np.indices((size,) * 3)[0] / 2.0)
        image = stripes + rng.normal(0, 0.3, (size,) * 3) - 2.0 * label
    task = 0 if kind == "sphere" else 1
    return Sample(f"{kind}-{seed}-{index}", image.astype(np.float32), label, task, kind)


def two_groups(n: int, *, seed: int = 0) -> list[Sample]:
    return [shape_sample(k, i, seed=seed) for i in range(n) for k in ("sphere", "cube")]
