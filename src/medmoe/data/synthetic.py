"""A synthetic two-structure dataset: a bright ball and a dark box in noise.

It plays the part of MONAI's ``create_test_image_3d`` for smoke runs of the command-line tools
without real data (``benchmarks/gpu_smoke.py``, the end-to-end CLI tests). MONAI's generator
draws random spheres of one label; the MoE commands need two labelled structures at known
places (a click must land inside the box), so this one is written here.
"""

from __future__ import annotations

import numpy as np

BALL_AND_BOX_LABELS = {"ball": 1, "box": 2}


def ball_and_box_cases(
    *, cases: int, size: int, seed: int = 0, spacing: float = 1.5
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"c0": (image, label, affine), ...}`` for ``write_nnunet_dataset(root, cases,
    BALL_AND_BOX_LABELS)``, each ``size``³ voxels of ``spacing`` mm.

    Label 1 is a ball of radius 0.15 ``size`` centred at (0.3, 0.3, 0.5) ``size``; label 2 is
    the box [0.6, 0.85) × [0.55, 0.8) × [0.375, 0.625) of the volume (rounded to voxels). The
    image is N(10, 1) noise, +20 in the ball and −5 in the box.
    """
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * 3).transpose(1, 2, 3, 0)
    centre = np.array([0.3, 0.3, 0.5]) * size
    lo = [round(f * size) for f in (0.6, 0.55, 0.375)]
    hi = [round(f * size) for f in (0.85, 0.8, 0.625)]
    affine = np.diag([spacing] * 3 + [1.0])
    out = {}
    for c in range(cases):
        label = np.zeros((size,) * 3, np.uint8)
        label[np.linalg.norm(grid - centre, axis=-1) <= 0.15 * size] = 1
        label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 2
        image = rng.normal(10, 1, label.shape) + 20 * (label == 1) - 5 * (label == 2)
        out[f"c{c}"] = (image.astype(np.float32), label, affine)
    return out
