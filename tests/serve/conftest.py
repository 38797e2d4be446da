"""Fixtures for the server tests: a tiny model (random weights) and a scan with an odd affine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from medmoe.data import save_volume  # noqa: E402
from medmoe.sam3d import Sam3DPredictor, build_sam3d  # noqa: E402

# LSA voxel axes, anisotropic: every view needs a transpose or a flip
AFFINE = np.array([[-0.9, 0, 0, 40], [0, 0, 2.5, -30], [0, 1.1, 0, 10], [0, 0, 0, 1]])
SHAPE = (70, 40, 60)


@pytest.fixture(scope="session")
def tiny_predictor():
    import torch

    torch.manual_seed(0)
    return Sam3DPredictor(build_sam3d("tiny"))


@pytest.fixture(scope="session")
def scan_path(tmp_path_factory):
    image = np.random.default_rng(0).normal(50, 10, SHAPE).astype(np.float32)
    image[20:40, 10:30, 20:40] += 40
    path = tmp_path_factory.mktemp("scan") / "scan.nii.gz"
    save_volume(path, image, AFFINE)
    return path
