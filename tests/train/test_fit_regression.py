"""Seeded runs of every caller of the training engine give the losses recorded with the engine's
previous interface (``fit`` with 20 keyword arguments, commit 1726941), so the interface change
kept the behaviour. The literals were printed by these very runs on that commit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medmoe.data.training import Sample

REL = 1e-6  # float32 sums may differ in the last bits across CPUs


def _weight_sum(module: nn.Module) -> float:
    return float(sum(v.double().abs().sum() for v in module.state_dict().values()
                     if v.is_floating_point()))  # fmt: skip


def _cubes(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([0, i])
        label = np.zeros((128,) * 3, bool)
        lo = rng.integers(40, 60, 3)
        label[lo[0] : lo[0] + 20, lo[1] : lo[1] + 24, lo[2] : lo[2] + 16] = True
        image = (rng.normal(0, 0.3, (128,) * 3) + 2.0 * label).astype(np.float32)
        out.append(Sample(f"s{i}", image, label, i % 2, "cube" if i % 2 else "sphere"))
    return out


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "checkpoints" / "metrics.jsonl").open()]


def test_engine_run_with_accumulation_schedule_clip_hook_and_validation(tmp_path):
    from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(12, 3, generator=gen), torch.randn(12, 1, generator=gen))
    hooks = []

    def step(batch, ctx):
        x, y = (t.to(ctx.device) for t in batch)
        return ((model(x) - y) ** 2).mean() + 0.01 * float(ctx.rng.normal())

    task = Task(
        model=model,
        step=step,
        data=data,
        optimizer=OptimizerSpec(
            param_groups=[{"params": list(model.parameters()), "lr": 1e-2}], weight_decay=0.1
        ),  # fmt: skip
        config={"what": "regression"},
        before_optimizer_step=lambda b: hooks.append(len(b[0])),
        validate=lambda m: {"val": float(m(torch.ones(1, 3)).detach().sum())},
    )
    loop = LoopConfig(epochs=3, batch_size=2, grad_accum=2, schedule="cosine", warmup_steps=2,
                      grad_clip=0.5, seed=3)  # fmt: skip
    history = fit(task, loop=loop, run=RunOptions(run_dir=tmp_path, progress=False), device="cpu")
    expected = [0.8518626342217127, 0.832192293057839, 0.7766288643081983]
    assert [h["loss"] for h in history] == pytest.approx(expected, rel=REL)
    val = [0.7767934799194336, 0.4650513529777527, 0.7104254961013794]
    assert [h["val"] for h in history] == pytest.approx(val, rel=REL)
    assert [h["lr"] for h in history] == [[0.0075], [pytest.approx(0.0025)], [0.0]]
    assert len(hooks) == 9  # 3 optimizer steps (6 micro-batches of 2, accumulated by 2) x 3
    assert _weight_sum(model) == pytest.approx(10.470358472317457, rel=REL)


def test_expert_warmup_and_gate_training(tmp_path):
    from medmoe.moe import (
        EmbeddingCache,
        ExpertTrainConfig,
        MoETrainConfig,
        load_expert,
        prepare_crops,
        train_expert,
        train_moe,
    )
    from medmoe.sam3d import build_sam3d

    torch.manual_seed(0)
    base = build_sam3d("tiny")
    cache = EmbeddingCache(
        root=tmp_path / "cache", base_sha256="0" * 64, encoder=base.image_encoder
    )
    data = prepare_crops(_cubes(6), cache=cache, device="cpu")
    cfg = ExpertTrainConfig(epochs=2, lr=1e-3, batch_size=2, clicks=2, box_prob=0.5)
    train_expert(base=base, base_sha256="0" * 64, data=data, name="e", labels=["cube"],
                 out_dir=tmp_path / "expert", config=cfg, progress=False)  # fmt: skip
    expert, _ = load_expert(tmp_path / "expert", base_sha256="0" * 64)
    gate_cfg = MoETrainConfig(epochs=2, lr_gate=1e-3, lr_expert=1e-4, batch_size=2, clicks=2,
                              box_prob=0.5, tau=0.5, update_top1_expert=True, warmup_epochs=1,
                              balance_classes=True)  # fmt: skip
    moe, report = train_moe(base=base, base_sha256="0" * 64, experts={"e": expert}, data=data,
                            out_dir=tmp_path / "moe", config=gate_cfg, progress=False)  # fmt: skip
    assert _losses(tmp_path / "expert") == pytest.approx(
        [3.355772852897644, 3.2500386238098145], rel=REL
    )
    assert _losses(tmp_path / "moe" / "warmup") == pytest.approx([0.6551463603973389], rel=REL)
    assert _losses(tmp_path / "moe") == pytest.approx(
        [4.093399167060852, 5.66455602645874], rel=REL
    )
    assert _weight_sum(expert) == pytest.approx(19831.242357915155, rel=REL)
    assert _weight_sum(moe.gate) == pytest.approx(9928.765284361645, rel=REL)
    assert report["tau"] == 0.5 and report["routing_accuracy"] == 0.5


def test_pretrain_and_the_demos_general_pretraining(tmp_path):
    from medmoe.demo.pretrain import pretrain_general
    from medmoe.pretrain.train import PretrainConfig, pretrain
    from medmoe.train.task import Runtime

    cfg = PretrainConfig(epochs=1, atlases=("neuromorphometrics",), max_structures=2,
                         val_per_structure=1, warmup_steps=1)  # fmt: skip
    history = pretrain(
        cfg, out=tmp_path / "pre", device="cpu", progress=False, runtime=Runtime(workers=0)
    )
    assert [h["loss"] for h in history] == pytest.approx([1.686098575592041], rel=REL)
    assert history[0]["val_dice_6"] == pytest.approx(0.0002123067097272724, rel=1e-4)
    model, losses = pretrain_general(_cubes(2), steps=3, lr=1e-3, clicks=2, box_prob=0.5, seed=0)
    assert losses == pytest.approx([1.6767686009407043, 1.6166470050811768], rel=REL)
