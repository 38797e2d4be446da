"""Device discipline without a GPU: the model goes to the ``meta`` device, which refuses any op
that mixes it with a CPU tensor. A device path that builds a tensor on the CPU for a model on
another device (a missing ``.to(device)``) fails here on a CPU-only machine, as it would on a
user's GPU. Only the device side runs (meta tensors have no values): the host side, metrics on
NumPy arrays, is kept in separate functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmoe.moe import EmbeddingCache
from medmoe.moe.interactive import interactive_loss
from medmoe.moe.validate import click_logits
from medmoe.sam3d import build_sam3d

META = torch.device("meta")


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_sam3d("tiny").eval().requires_grad_(False).to(META)


def cube_label() -> np.ndarray:
    label = np.zeros((128, 128, 128), bool)
    label[50:70, 60:80, 55:75] = True
    return label


def test_the_check_catches_a_cpu_tensor(base):
    with pytest.raises(RuntimeError, match="device"), torch.no_grad():
        base.image_encoder(torch.zeros(1, 1, 128, 128, 128))


def test_embedding_cache_encodes_on_the_encoders_device(base, tmp_path):
    cache = EmbeddingCache(root=tmp_path, base_sha256="0" * 64, encoder=base.image_encoder)
    assert cache.device == META  # found from the encoder's parameters
    emb = cache.encode(np.zeros((128, 128, 128), np.float32))
    assert emb.device == META and emb.shape == (1, base.config.prompt_dim, 8, 8, 8)


def test_validation_click_runs_on_the_models_device(base):
    item = {"embedding": torch.zeros(base.config.prompt_dim, 8, 8, 8), "label": cube_label()}

    def predict_low(emb, pts, lab):
        return base.decode(emb, points=(pts, lab))[0]

    with torch.no_grad():
        low = click_logits(predict_low, item, device=META)
    assert low.device == META and low.shape == (1, 1, 32, 32, 32)


def test_training_click_loss_builds_its_prompts_and_target_on_the_device(base):
    """The first iteration of the click loop: prompts (point or box) and the target on the
    device; the loss is taken, then the host reads the mask (which meta cannot give)."""
    emb = torch.zeros(1, base.config.prompt_dim, 8, 8, 8, device=META)
    seen = {}

    def decode(pts, lab, box, mask_input):
        seen["prompt"] = pts if pts is not None else box
        return base.decode(emb, points=(pts, lab) if pts is not None else None, boxes=box)[0]

    for box_prob in (0.0, 1.0):
        with pytest.raises(NotImplementedError, match="meta"):  # .numpy() of the mask
            interactive_loss(
                decode, cube_label(), size=128, n_iter=1, rng=np.random.default_rng(0),
                box_prob=box_prob, device=META,
            )  # fmt: skip
        assert seen["prompt"].device == META


def test_gate_warmup_step_builds_its_batch_on_the_gates_device(base):
    """The warm-up stacks CPU embeddings, draws point or box prompts and its targets: all of
    it must reach the gate's device (the loss comes back there)."""
    from medmoe.moe import Gate, GateConfig, MoESam3D
    from medmoe.moe.warmup import GateWarmupStep
    from medmoe.train.distributed import DistContext
    from medmoe.train.engine import StepContext

    gate = Gate(config=GateConfig(embed_dim=base.config.prompt_dim, num_experts=1)).to(META)
    moe = MoESam3D(base=base, experts={"e": base.mask_decoder}, gate=gate)
    step = GateWarmupStep(moe=moe, box_prob=0.5, weights=torch.tensor([0.75, 1.5]))
    ctx = StepContext(
        epoch=0, step=0, device=META, rng=np.random.default_rng(0),
        dist=DistContext(rank=0, world_size=1, local_rank=0, device=META), module=gate,
    )  # fmt: skip
    items = [
        {
            "embedding": torch.zeros(base.config.prompt_dim, 8, 8, 8),
            "label": cube_label(),
            "task": t,
        }
        for t in (0, 1, 0, 1)
    ]
    assert step(items, ctx).device == META
