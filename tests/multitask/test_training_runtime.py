"""``train_fundus`` takes the trainers' runtime (workers, precision, deterministic kernels) and
``keep_checkpoints``; the loop saves the runtime with every checkpoint."""

from __future__ import annotations

import torch

from medmoe.multitask.data.splits import synthetic_split
from medmoe.multitask.model.moe import MultiTaskConfig
from medmoe.multitask.training.train import FundusTrainConfig, train_fundus
from medmoe.train.checkpoint import epoch_checkpoints
from medmoe.train.task import Runtime


def test_fundus_training_saves_its_runtime_and_keeps_the_latest_checkpoint(tmp_path):
    data = synthetic_split(split="train", seed=0, n_cls=4, n_seg=4, size=(32, 48))
    mc = MultiTaskConfig(backbone_width=4, head_width=8, image_size=(32, 48))
    cfg = FundusTrainConfig(epochs=2, batch_size=4, augment="none")
    runtime = Runtime(workers=0, precision="fp32", deterministic=True)
    train_fundus(model_config=mc, config=cfg, data=data, out_dir=tmp_path, progress=False,
                 runtime=runtime, keep_checkpoints=1)  # fmt: skip
    (last,) = epoch_checkpoints(tmp_path / "checkpoints")
    assert last.name == "checkpoint_epoch0001.pt"
    loop = torch.load(last, map_location="cpu", weights_only=True)["config"]["loop"]
    assert (loop["workers"], loop["precision"], loop["deterministic"]) == (0, "fp32", True)
