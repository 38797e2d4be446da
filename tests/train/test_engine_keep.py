"""The engine's ``keep_checkpoints``: only the latest epochs stay on disk, and resume still
continues from the newest."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit


def _fit(model: nn.Module, run_dir, epochs: int, *, resume: bool, keep: int | None):
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, generator=gen), torch.randn(8, 1, generator=gen))

    def step(batch, ctx):
        x, y = (t.to(ctx.device) for t in batch)
        return ((model(x) - y) ** 2).mean()

    task = Task(
        model=model, step=step, data=data, config={"what": "keep"},
        optimizer=OptimizerSpec(param_groups=[{"params": list(model.parameters()), "lr": 1e-2}]),
    )  # fmt: skip
    run = RunOptions(run_dir=run_dir, resume=resume, progress=False, keep_checkpoints=keep)
    return fit(task, loop=LoopConfig(epochs=epochs, batch_size=4), run=run, device="cpu")


def _names(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.glob("*.pt"))


def test_keep_two_of_four_then_resume(tmp_path):
    torch.manual_seed(0)
    _fit(nn.Linear(3, 1), tmp_path, 4, resume=False, keep=2)
    assert _names(tmp_path) == ["checkpoint_epoch0002.pt", "checkpoint_epoch0003.pt"]
    history = _fit(nn.Linear(3, 1), tmp_path, 5, resume=True, keep=2)
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]  # epochs 0-3 from the checkpoint
    assert _names(tmp_path) == ["checkpoint_epoch0003.pt", "checkpoint_epoch0004.pt"]


def test_default_keeps_every_epoch(tmp_path):
    torch.manual_seed(0)
    _fit(nn.Linear(3, 1), tmp_path, 3, resume=False, keep=None)
    assert len(_names(tmp_path)) == 3
