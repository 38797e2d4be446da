"""A tiny MoE bundle (random weights) and a synthetic datastore: scans with two structures,
``spleen`` (a bright box, value 1) and ``kidney`` (a dark ball, value 2)."""

from __future__ import annotations

import numpy as np
import pytest

from medmoe.data import save_volume

SHAPE = (48, 48, 48)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def synthetic_scan(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image, label)``: noise in a body, a bright box (1) and a dark ball (2), placed by
    ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 5, SHAPE).astype(np.float32)
    image[4:44, 4:44, 4:44] += 100  # the body
    label = np.zeros(SHAPE, dtype=np.uint8)
    o = rng.integers(8, 14, 3)
    label[o[0] : o[0] + 12, o[1] : o[1] + 10, o[2] : o[2] + 12] = 1
    c = rng.integers(30, 36, 3)
    grid = np.stack(np.indices(SHAPE), -1)
    label[np.linalg.norm(grid - c, axis=-1) < 5] = 2
    image[label == 1] += 80
    image[label == 2] -= 60
    return image, label


def write_scan(folder, name: str, seed: int):
    image, label = synthetic_scan(seed)
    img = save_volume(folder / f"{name}.nii.gz", image, AFFINE)
    lab = save_volume(folder / f"{name}_label.nii.gz", label, AFFINE)
    return img, lab


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A tiny base + one expert ``liver`` (labels ``["liver"]``) + a gate, as a bundle."""
    import torch

    from medmoe.moe import Gate, GateConfig, MoESam3D, save_moe_bundle
    from medmoe.sam3d import build_mask_decoder, build_sam3d, save_sam3d_checkpoint
    from medmoe.utils.files import file_sha256

    torch.manual_seed(3)
    root = tmp_path_factory.mktemp("bundle")
    base = build_sam3d("tiny")
    save_sam3d_checkpoint(base, root / "base.pth")
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    moe = MoESam3D(base=base, experts={"liver": build_mask_decoder(base.config)}, gate=gate)
    sha = file_sha256(root / "base.pth")
    save_moe_bundle(
        root / "moe", moe=moe, base_checkpoint=root / "base.pth", base_sha256=sha, expert_dirs={}
    )
    return root / "moe"
