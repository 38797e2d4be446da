"""End to end on synthetic data: the FT expert learns its task, the gate learns to route, and
original-task samples that stay below tau get exactly the general model's output."""

from __future__ import annotations

import numpy as np
import torch
from tests.moe.helpers import two_groups

from medmoe.eval.clicks import first_click
from medmoe.eval.metrics import dice
from medmoe.moe import (
    EmbeddingCache,
    ExpertTrainConfig,
    MoEPredictor,
    MoETrainConfig,
    load_expert,
    prepare_crops,
    train_expert,
    train_moe,
)
from medmoe.sam3d import Sam3DPredictor, build_sam3d


def one_click_dice(predictor, samples):
    out = []
    for s in samples:
        predictor.set_image(s.image)
        c = first_click(s.label)
        p = predictor.predict(points=c.point[None].astype(float), labels=[1])
        out.append(dice(p.mask[0, 0].numpy(), s.label))
    return float(np.mean(out))


def test_expert_learns_gate_routes_and_general_is_kept(tmp_path):
    torch.manual_seed(0)
    base = build_sam3d("tiny")
    counting = {"n": 0}

    def encoder(x):
        counting["n"] += 1
        return base.image_encoder(x)

    cache = EmbeddingCache(root=tmp_path / "cache", base_sha256="0" * 64, encoder=encoder)
    train = two_groups(10, seed=0)
    held = two_groups(6, seed=1)
    cubes = [s for s in train if s.task == 1]
    before = one_click_dice(Sam3DPredictor(base), [s for s in held if s.task == 1])
    train_expert(
        base=base,
        base_sha256="0" * 64,
        data=prepare_crops(cubes, cache=cache, device="cpu"),
        name="cubes",
        labels=["cube"],
        out_dir=tmp_path / "expert",
        config=ExpertTrainConfig(
            epochs=8, lr=2e-3, batch_size=1, clicks=2, box_prob=0.0, val_fraction=0.2
        ),
        progress=False,
    )
    calls_after_first_pass = counting["n"]
    assert calls_after_first_pass == len(cubes)  # one encoder call per crop, over 8 epochs
    expert, info = load_expert(tmp_path / "expert", base_sha256="0" * 64)
    assert info.val_dice is not None

    def ft_predictor():
        ft = build_sam3d("tiny")
        ft.load_state_dict(base.state_dict())
        ft.mask_decoder.load_state_dict(expert.state_dict())
        return Sam3DPredictor(ft)

    after = one_click_dice(ft_predictor(), [s for s in held if s.task == 1])
    assert after > before + 0.2, (before, after)

    moe, report = train_moe(
        base=base,
        base_sha256="0" * 64,
        experts={"cubes": expert},
        data=prepare_crops(train, cache=cache, device="cpu"),
        out_dir=tmp_path / "moe",
        config=MoETrainConfig(
            epochs=3, lr_gate=1e-3, batch_size=1, clicks=1, box_prob=0.0, tau=0.5
        ),
        progress=False,
    )
    assert counting["n"] == len(train)  # the gate epochs reuse the cache too
    predictor = MoEPredictor(moe)
    correct, below = 0, 0
    for s in held:
        predictor.set_image(s.image)
        c = first_click(s.label)
        p = predictor.predict(points=c.point[None].astype(float), labels=[1])
        chosen = 1 if p.used_expert else 0
        correct += chosen == s.task
        if s.task == 0 and not p.used_expert:
            below += 1
            plain = Sam3DPredictor(base)
            plain.set_image(s.image)
            ref = plain.predict(points=c.point[None].astype(float), labels=[1])
            assert torch.equal(p.low_res_logits, ref.low_res_logits)
    assert correct / len(held) >= 0.9, correct
    assert below > 0
