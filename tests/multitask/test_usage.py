"""Expert usage per task during training, and the collapse warning (issue #27, item 1)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from medmoe.multitask.data.splits import synthetic_split
from medmoe.multitask.model.moe import MultiTaskConfig
from medmoe.multitask.training.train import FundusTrainConfig, train_fundus
from medmoe.multitask.training.usage import UsageMeter, collapsed, format_usage


@pytest.mark.parametrize(
    "share, expected",
    [
        ([1.0, 0.0, 0.0], True),  # one expert takes every sample
        ([0.97, 0.03, 0.0], True),  # the second is below 5 %
        ([0.9, 0.1, 0.0], False),
        ([1.0, 1.0, 1.0], False),  # dense: every expert runs
        ([1.0], False),  # one expert: nothing can collapse
    ],
)
def test_collapsed(share, expected):
    assert collapsed(share) is expected


def test_meter_by_hand(caplog):
    meter = UsageMeter()
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    meter.update("dr", probs, torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool), epoch=3)
    meter.update("dr", probs[:1], torch.tensor([[0, 0, 1]], dtype=torch.bool), epoch=3)
    meter.update("seg", probs[:1], torch.tensor([[1, 0, 0]], dtype=torch.bool), epoch=3)
    with caplog.at_level(logging.WARNING):
        out = meter.pop()
    # dr: 3 samples; expert 0 kept by 2, expert 1 by 1, expert 2 by 1; 4 kept in all
    assert out["usage"]["dr"]["share"] == pytest.approx([2 / 3, 1 / 3, 1 / 3], abs=1e-4)
    assert out["usage"]["dr"]["kept"] == pytest.approx(4 / 3, abs=1e-4)
    assert out["usage"]["dr"]["gate"] == pytest.approx([2.0 / 3, 0.7 / 3, 0.1], abs=1e-4)
    assert out["collapsed"] == ["seg"]  # one sample, one expert
    assert "epoch 4: seg routing collapsed" in caplog.text
    assert format_usage({"seg": out["usage"]["seg"]}) == "seg 1.00/0.00/0.00 (kept 1.00)"
    assert meter.pop() == {}  # started over


def test_training_history_and_log_have_usage(tmp_path):
    data = synthetic_split(split="train", seed=0, n_cls=4, n_seg=4, size=(32, 48))
    mc = MultiTaskConfig(backbone_width=4, head_width=8, image_size=(32, 48))
    cfg = FundusTrainConfig(epochs=2, batch_size=4, augment="none")
    _, history = train_fundus(
        model_config=mc, config=cfg, data=data, out_dir=tmp_path, progress=False
    )
    dense, sparse = history  # epoch 0 dense (warm-up), epoch 1 top-p
    assert dense["usage"]["dr"]["share"] == [1.0, 1.0, 1.0]
    assert dense["usage"]["seg"]["kept"] == 3.0
    assert set(sparse["usage"]) == {"dr", "dme", "seg"}
    for u in sparse["usage"].values():
        assert 1.0 <= u["kept"] <= 3.0
        assert sum(u["share"]) == pytest.approx(u["kept"], abs=1e-3)
    logged = [json.loads(x) for x in (tmp_path / "checkpoints" / "metrics.jsonl").open()]
    assert logged[1]["usage"] == sparse["usage"]
