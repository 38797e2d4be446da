"""Bugs fixed in the MoE trainer, each pinned by a test that failed before the fix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medmoe.moe.steps import GateStep
from medmoe.moe.train import build_moe
from medmoe.moe.train_config import MoETrainConfig
from medmoe.sam3d import build_sam3d
from medmoe.train.distributed import DistContext
from medmoe.train.engine import StepContext

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_sam3d("tiny").eval()


def test_tau_zero_is_kept(base):
    """``--tau 0`` (the expert always used) was stored as 0.5 by ``tau or DEFAULT_TAU``."""
    cfg = MoETrainConfig(tau=0.0)
    moe = build_moe(base=base, experts={"e": copy.deepcopy(base.mask_decoder)}, config=cfg, seed=0)
    assert moe.tau == 0.0
    assert (
        build_moe(base=base, experts={"e": base.mask_decoder}, config=MoETrainConfig(), seed=0).tau
        == 0.5
    )


def test_gate_loss_is_cross_entropy_on_the_logits(base):
    """With a saturated gate (logits 0 and 60) and the other class as target, the
    cross-entropy is 60 (log-sum-exp); ``log(softmax + 1e-8)`` capped it at -log(1e-8) = 18.42."""
    cfg = MoETrainConfig(tau=0.5, ce_weight=1.0)
    moe = build_moe(base=base, experts={"e": copy.deepcopy(base.mask_decoder)}, config=cfg, seed=0)
    head = moe.gate.head[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 60.0]))
    step = GateStep(moe=moe, config=cfg)
    ctx = StepContext(
        epoch=0, step=0, device=CPU, rng=np.random.default_rng(0),
        dist=DistContext(rank=0, world_size=1, local_rank=0, device=CPU), module=moe.gate,
    )  # fmt: skip
    emb = torch.zeros(1, base.config.prompt_dim, 8, 8, 8)
    decode = step.decoder_for(emb, {"task": 0}, ctx)
    pts = torch.tensor([[[64.0, 64.0, 64.0]]])
    _, ce = decode(pts, torch.ones(1, 1, dtype=torch.long), None, None)
    assert float(ce) == pytest.approx(60.0, abs=1e-3)
    expected = F.cross_entropy(torch.tensor([[0.0, 60.0]]), torch.tensor([0]))
    assert float(ce) == pytest.approx(float(expected), abs=1e-4)
