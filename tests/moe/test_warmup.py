"""The gate's warm-up (cross-entropy on first prompts, no decoder) and its class weights."""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medmoe.moe.interactive import first_prompt
from medmoe.moe.train import build_moe, train_moe
from medmoe.moe.train_config import MoETrainConfig
from medmoe.moe.validate import moe_click
from medmoe.moe.warmup import GateWarmupStep, class_weights, weighted_ce
from medmoe.sam3d import build_sam3d
from medmoe.train.distributed import DistContext
from medmoe.train.engine import StepContext

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_sam3d("tiny").eval()


def _ctx(seed: int, module=None) -> StepContext:
    return StepContext(
        epoch=0, step=0, device=CPU, rng=np.random.default_rng(seed),
        dist=DistContext(rank=0, world_size=1, local_rank=0, device=CPU), module=module,
    )  # fmt: skip


def _cube(lo: int, hi: int) -> np.ndarray:
    label = np.zeros((128,) * 3, bool)
    label[lo:hi, lo:hi, lo:hi] = True
    return label


def test_class_weights_by_hand():
    # 3 crops of class 0, 1 of class 1, none of class 2: n = 4, k = 2 classes present
    w = class_weights([0, 0, 0, 1], 3)
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 1.0])
    assert float(w[[0, 0, 0, 1]].mean()) == pytest.approx(1.0)  # mean weight over the crops


def test_weighted_ce_keeps_the_weight_of_a_single_crop():
    """``F.cross_entropy(weight=...)`` divides by the batch's summed weights: for the click
    loop's batch of one that cancels the weight. By hand: CE of logits (2, 0) at class 1 is
    log(1 + e^2) = 2.126928, times the weight 3."""
    logits, target = torch.tensor([[2.0, 0.0]]), torch.tensor([1])
    w = torch.tensor([0.5, 3.0])
    assert float(weighted_ce(logits, target, w)) == pytest.approx(3 * 2.126928, abs=1e-5)
    assert float(weighted_ce(logits, target, None)) == pytest.approx(2.126928, abs=1e-5)


@pytest.mark.parametrize("box_prob", [0.0, 1.0])
def test_warmup_step_is_the_mean_of_per_crop_weighted_ce(base, box_prob):
    """One batched gate call gives the mean of each crop's weighted cross-entropy on the same
    first prompt drawn one crop at a time."""
    torch.manual_seed(1)
    moe = build_moe(
        base=base, experts={"e": copy.deepcopy(base.mask_decoder)}, config=MoETrainConfig(), seed=0
    )
    c = base.config.prompt_dim
    items = [
        {"embedding": torch.randn(c, 8, 8, 8), "label": _cube(50, 70), "task": 0},
        {"embedding": torch.randn(c, 8, 8, 8), "label": _cube(30, 60), "task": 1},
    ]
    w = torch.tensor([0.5, 2.0])
    step = GateWarmupStep(moe=moe, box_prob=box_prob, weights=w)
    loss = step(items, _ctx(3, moe.gate))

    rng, pe, expected = np.random.default_rng(3), base.prompt_encoder, []
    for item in items:
        points, labels, box = first_prompt(item["label"], rng=rng, box_prob=box_prob, device=CPU)
        assert (box is not None) == (box_prob == 1.0)
        prompt = None
        if points:
            prompt = (torch.tensor(np.stack(points))[None].float(), torch.tensor([labels]))
        tokens = pe(prompt, box, None)[0]
        logits = moe.gate(item["embedding"][None], pe.get_dense_pe(), tokens, return_logits=True)
        target = torch.tensor([item["task"]])
        expected.append(w[item["task"]] * F.cross_entropy(logits, target))
    assert float(loss.detach()) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)


class _Record(NamedTuple):
    task: int


class _Crops(torch.utils.data.Dataset):
    """In-memory crops with the ``records``/``subset`` interface ``train_moe`` reads."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.records = [_Record(it["task"]) for it in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def subset(self, indices) -> _Crops:
        return _Crops([self.items[i] for i in indices])


def _separable_crops(c: int, n: int) -> _Crops:
    """Task 1's embeddings carry +0.1 on the first half of the channels and -0.1 on the second
    (a pattern the gate's layer norms keep), under unit noise; task 0's are noise alone. 3 of
    task 0 per task 1."""
    gen = torch.Generator().manual_seed(0)
    pattern = torch.cat([torch.full((c // 2,), 0.1), torch.full((c - c // 2,), -0.1)])
    items = []
    for i in range(n):
        task = int(i % 4 == 3)
        emb = torch.randn(c, 8, 8, 8, generator=gen) + task * pattern[:, None, None, None]
        items.append({"embedding": emb, "label": _cube(48, 80), "task": task, "key": str(i)})
    return _Crops(items)


def _routing(moe, crops: _Crops) -> float:
    hits = [
        int(moe_click(moe, it, tau=0.5, device=CPU).gate_probs[0].argmax()) == it["task"]
        for it in crops.items
    ]
    return float(np.mean(hits))


@pytest.mark.parametrize("warmup", [0, 15])
def test_warmup_teaches_the_gate_to_route(base, tmp_path, warmup):
    """With one click-loop epoch at a small learning rate the gate has not learnt to route;
    fifteen warm-up epochs before it (the same learning rate, class-balanced) have."""
    crops = _separable_crops(base.config.prompt_dim, 16)
    torch.manual_seed(0)
    moe, _ = train_moe(
        base=base, base_sha256="0" * 64, experts={"e": copy.deepcopy(base.mask_decoder)},
        data=crops, out_dir=tmp_path / "moe", progress=False, device="cpu",
        config=MoETrainConfig(
            epochs=1, lr_gate=3e-4, batch_size=4, clicks=1, box_prob=0.5, val_fraction=0.0,
            tau=0.5, warmup_epochs=warmup, balance_classes=True,
        ),
    )  # fmt: skip
    moe.eval()
    accuracy = _routing(moe, crops)
    if warmup:
        assert accuracy == 1.0
        kept = sorted(p.name for p in (tmp_path / "moe" / "warmup" / "checkpoints").glob("*.pt"))
        assert kept == ["checkpoint_epoch0014.pt"]  # the latest only: resume reads no other
    else:
        assert accuracy < 1.0, accuracy  # else the test would pass without a warm-up
