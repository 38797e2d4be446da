"""Fundus device discipline without a GPU: the model goes to the ``meta`` device, which refuses
any op that mixes it with a CPU tensor, so a device path that leaves a tensor on the CPU (a
missing ``.to(device)``) fails here as it would on a user's GPU. Only the device side runs (meta
tensors have no values; the host side, metrics on NumPy arrays, is kept in separate functions),
with dense routing: top-p's sparse dispatch picks rows by value, which meta cannot give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmoe.multitask.data.splits import synthetic_split
from medmoe.multitask.evaluation.evaluate import grade_outputs, lesion_outputs
from medmoe.multitask.evaluation.predict import photo_outputs
from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE
from medmoe.multitask.training.train import FundusStep, FundusTrainConfig, TrainingSet
from medmoe.train.distributed import DistContext
from medmoe.train.engine import StepContext

META = torch.device("meta")
SIZE = (32, 48)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = MultiTaskConfig(backbone_width=8, head_width=16, image_size=SIZE)
    return MultiTaskMoE(config=cfg).to(META)


@pytest.fixture(scope="module")
def data():
    return synthetic_split(split="train", seed=0, n_cls=2, n_seg=2, size=SIZE)


def test_the_check_catches_a_cpu_tensor(model):
    with pytest.raises(RuntimeError, match="device"), torch.no_grad():
        model(torch.zeros(1, 3, *SIZE), dense=True)


def test_evaluation_runs_on_the_models_device(model, data):
    images = torch.stack([data.grading[i]["image"] for i in range(2)])  # a CPU batch
    with torch.no_grad():
        out = grade_outputs(model, images, dense=True, tasks=("dr", "dme"))
        prob, used = lesion_outputs(model, images, dense=True)
    assert all(p.device == META and n.device == META for p, n in out.values())
    assert prob.device == META and prob.shape == (2, 5, *SIZE) and used.device == META


def test_predict_runs_on_the_models_device(model):
    with torch.no_grad():
        out = photo_outputs(model, np.zeros((3, *SIZE), np.float32), dense=True)
    assert {t: o.output.device for t, o in out.items()} == {"dr": META, "dme": META, "seg": META}


@pytest.mark.parametrize("index", [0, 2], ids=["grades", "lesions"])
def test_training_step_puts_images_and_labels_on_the_device(model, data, index):
    item = TrainingSet(data=data, augmenter=None)[(0, index)]
    batch = torch.utils.data.default_collate([item])
    step = FundusStep(model=model, config=FundusTrainConfig(epochs=2))  # epoch 0: dense
    dist = DistContext(rank=0, world_size=1, local_rank=0, device=META)
    ctx = StepContext(epoch=0, step=0, device=META, rng=np.random.default_rng(0), dist=dist)
    loss = step(batch, ctx)
    assert loss.device == META and loss.shape == ()
