"""``Engine.swap``: a trained bundle replaces the served experts and gate on the same base;
a predictor on another base is refused (its embeddings would not fit the cached ones)."""

from __future__ import annotations

import pytest
import torch

from medmoe.moe import Gate, GateConfig, MoEPredictor, MoESam3D
from medmoe.sam3d import build_mask_decoder, build_sam3d
from medmoe.serve.auth import may
from medmoe.serve.engine import Engine


def _moe(base, names):
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=len(names)))
    return MoESam3D(base=base, experts={n: build_mask_decoder(base.config) for n in names},
                    gate=gate)  # fmt: skip


def test_swap_on_the_same_base_and_refused_on_another():
    torch.manual_seed(0)
    base = build_sam3d("tiny")
    engine = Engine(predictor=MoEPredictor(_moe(base, ["liver"])))
    encoder = engine.encoder
    engine.swap(MoEPredictor(_moe(base, ["liver", "spleen"])))
    assert engine.expert_names == ["liver", "spleen"] and engine.encoder is encoder
    assert engine.predictor.moe.expert_names == ["liver", "spleen"]
    with pytest.raises(ValueError, match="served base"):
        engine.swap(MoEPredictor(_moe(build_sam3d("tiny"), ["liver"])))
    assert engine.expert_names == ["liver", "spleen"]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("admin", True), ("reviewer", True), ("annotator", False), ("user", False)],
)
def test_who_may_train(role, allowed):
    assert may(role, "train") is allowed
