"""Resuming: a run folder written before a loop setting existed still resumes, a nested trainer
config may extend its ``epochs``, and any other change is refused in one line naming the key."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medmoe.errors import InputError
from medmoe.train.checkpoint import epoch_checkpoints
from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit


def _fit(run_dir, *, epochs: int, lr: float = 1e-2, resume: bool = False) -> tuple[list, nn.Module]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, generator=gen), torch.randn(8, 1, generator=gen))

    def step(batch, ctx):
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    task = Task(
        model=model, step=step, data=data,
        optimizer=OptimizerSpec(param_groups=[{"params": list(model.parameters()), "lr": 1e-2}]),
        # nested like ``medmoe pretrain``'s {"pretrain": cfg}
        config={"pretrain": {"epochs": epochs, "lr": lr, "atlases": ["a"]}},
    )  # fmt: skip
    run = RunOptions(run_dir=run_dir, resume=resume, progress=False)
    return fit(task, loop=LoopConfig(epochs=epochs, batch_size=4), run=run, device="cpu"), model


def _as_written_before_precision(run_dir) -> None:
    """Rewrite the newest checkpoint's config as the engine wrote it before ``precision`` and
    ``deterministic`` were loop settings (commit 9542373)."""
    path = epoch_checkpoints(run_dir)[-1]
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("precision", "deterministic"):
        del payload["config"]["loop"][key]
    torch.save(payload, path)


def test_an_older_run_folder_resumes_and_matches_an_uninterrupted_run(tmp_path):
    whole, model_whole = _fit(tmp_path / "whole", epochs=3)
    _fit(tmp_path / "cut", epochs=1)
    _as_written_before_precision(tmp_path / "cut")
    resumed, model_resumed = _fit(tmp_path / "cut", epochs=3, resume=True)
    assert [h["epoch"] for h in resumed] == [0, 1, 2]
    assert [h["loss"] for h in resumed] == [h["loss"] for h in whole]
    for a, b in zip(model_whole.parameters(), model_resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_another_nested_setting_is_refused_in_one_line_that_names_it(tmp_path):
    _fit(tmp_path, epochs=1)
    with pytest.raises(InputError) as err:
        _fit(tmp_path, epochs=2, lr=0.5, resume=True)
    message = str(err.value)
    assert "\n" not in message
    assert "trainer.pretrain.lr 0.01 -> 0.5" in message
    assert "epochs" not in message  # a resume may extend the run


def test_a_checkpoint_with_other_weights_is_refused_in_one_line(tmp_path):
    """As a gate run folder from before the frozen experts were left out of its checkpoints."""
    from medmoe.errors import CheckpointError

    data = TensorDataset(torch.ones(4, 3), torch.zeros(4, 1))

    def run(model: nn.ModuleDict, resume: bool):
        def step(batch, ctx):
            x, y = batch
            return ((model["gate"](x) - y) ** 2).mean()

        params = [{"params": list(model["gate"].parameters()), "lr": 0.1}]
        task = Task(model=model, step=step, data=data, config={"what": "gate"},
                    optimizer=OptimizerSpec(param_groups=params))  # fmt: skip
        run = RunOptions(run_dir=tmp_path, resume=resume, progress=False)
        return fit(task, loop=LoopConfig(epochs=2, batch_size=4), run=run, device="cpu")

    frozen = nn.Linear(3, 1).requires_grad_(False)
    run(nn.ModuleDict({"gate": nn.Linear(3, 1), "experts": frozen}), resume=False)
    with pytest.raises(CheckpointError) as err:
        run(nn.ModuleDict({"gate": nn.Linear(3, 1)}), resume=True)
    message = str(err.value)
    assert "\n" not in message
    assert "unexpected experts.bias and 1 more" in message and "another output folder" in message
