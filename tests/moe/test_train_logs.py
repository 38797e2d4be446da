"""Expert and gate training validate after every epoch into ``metrics.jsonl``, and the gate's
checkpoints hold what trains: the gate, plus the experts only with ``update_top1_expert``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from tests.moe.test_warmup import _separable_crops

from medmoe.moe import ExpertTrainConfig, MoETrainConfig, train_moe
from medmoe.moe.expert import read_expert_info
from medmoe.moe.train import split, train_expert
from medmoe.moe.validate import moe_click
from medmoe.sam3d import build_sam3d
from medmoe.train.checkpoint import epoch_checkpoints

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_sam3d("tiny").eval()


def _log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "checkpoints" / "metrics.jsonl").open()]


@pytest.mark.parametrize("update", [False, True])
def test_gate_epochs_log_validation_and_checkpoints_hold_only_what_trains(base, tmp_path, update):
    crops = _separable_crops(base.config.prompt_dim, 16)
    config = MoETrainConfig(epochs=2, lr_gate=1e-3, batch_size=4, clicks=1, box_prob=0.0,
                            val_fraction=0.25, tau=0.5, update_top1_expert=update)  # fmt: skip
    torch.manual_seed(0)
    moe, _ = train_moe(
        base=base, base_sha256="0" * 64, experts={"e": copy.deepcopy(base.mask_decoder)},
        data=crops, out_dir=tmp_path, config=config, progress=False, device="cpu",
    )  # fmt: skip
    log = _log(tmp_path)
    assert [e["epoch"] for e in log] == [0, 1]
    # 12 crops of task 0 and 4 of task 1: a quarter of each held out, so 3 + 1
    _, val = split(crops, 0.25, 0)
    assert len(val) == 4
    for entry in log:
        assert 0.0 <= entry["val_dice"] <= 1.0
        assert entry["val_routing_accuracy"] * 4 == round(entry["val_routing_accuracy"] * 4)
    moe.eval()
    hits = [int(moe_click(moe, it, tau=0.5, device=CPU).gate_probs[0].argmax()) == it["task"]
            for it in val]  # fmt: skip
    assert log[-1]["val_routing_accuracy"] == np.mean(hits)  # the last epoch's is the final's
    keys = torch.load(epoch_checkpoints(tmp_path / "checkpoints")[-1], weights_only=True)["model"]
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == ({"gate", "experts"} if update else {"gate"})
    assert not [k for k in keys if k.startswith("base.")]


def test_expert_epochs_log_the_validation_dice_the_artifact_keeps(base, tmp_path):
    crops = _separable_crops(base.config.prompt_dim, 8)
    config = ExpertTrainConfig(epochs=2, lr=1e-3, batch_size=4, clicks=1, box_prob=0.0,
                               val_fraction=0.25)  # fmt: skip
    train_expert(base=base, base_sha256="0" * 64, data=crops, name="e", labels=["cube"],
                 out_dir=tmp_path, config=config, progress=False, device="cpu")  # fmt: skip
    log = _log(tmp_path)
    assert [e["epoch"] for e in log] == [0, 1]
    assert all(0.0 <= e["val_dice"] <= 1.0 for e in log)
    assert read_expert_info(tmp_path).val_dice == log[-1]["val_dice"]


def test_crop_encoding_shows_its_progress(tmp_path, capsys):
    from tests.moe.helpers import shape_sample

    from medmoe.moe import EmbeddingCache, prepare_crops

    cache = EmbeddingCache(root=tmp_path, base_sha256="c" * 64,
                           encoder=lambda x: x[:, :, ::16, ::16, ::16])  # fmt: skip
    samples = (shape_sample(kind, i) for i, kind in enumerate(["sphere", "cube", "sphere"]))
    data = prepare_crops(samples, cache=cache, device="cpu")
    assert len(data) == 3
    err = capsys.readouterr().err
    assert "crops encoded" in err and "3crop" in err.replace(" ", "")
    prepare_crops(iter([shape_sample("cube", 1)]), cache=cache, device="cpu", progress=False)
    assert "crops encoded" not in capsys.readouterr().err
