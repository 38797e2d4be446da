"""Fixtures for the server tests: a tiny model (random weights) and a scan with an odd affine."""

from __future__ import annotations

import socket
import threading
import time

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


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """A tiny SAM-Med3D base (random weights) + one expert + gate, saved as a MoE bundle;
    tau = 0 so that the expert answers and its name and s_top come back."""
    import torch

    from medmoe.moe import Gate, GateConfig, MoESam3D, save_moe_bundle
    from medmoe.sam3d import build_mask_decoder, build_sam3d, save_sam3d_checkpoint
    from medmoe.utils.files import file_sha256

    torch.manual_seed(3)
    root = tmp_path_factory.mktemp("bundle")
    base = build_sam3d("tiny")
    save_sam3d_checkpoint(base, root / "base.pth")
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    moe = MoESam3D(base=base, experts={"liver": build_mask_decoder(base.config)}, gate=gate, tau=0)
    sha = file_sha256(root / "base.pth")
    save_moe_bundle(
        root / "moe", moe=moe, base_checkpoint=root / "base.pth", base_sha256=sha, expert_dirs={}
    )
    return root / "moe"


def start_server(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    return server, thread, f"http://127.0.0.1:{port}"
