"""The engine's non-finite guard: a NaN/inf loss term or gradient norm stops the run with one
line naming the epoch, step and term (the last good checkpoint kept), or, with
``nonfinite="skip"``, drops that optimizer step and counts it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medmoe.train.checkpoint import epoch_checkpoints
from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit
from medmoe.train.guard import NonFiniteError


def _data(poison: int | None = None) -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=gen), torch.randn(6, 1, generator=gen)
    if poison is not None:
        x[poison, 0] = math.nan  # this sample's loss is NaN
    return TensorDataset(x, y)


def _fit(model, data, run_dir, *, epochs: int, nonfinite: str = "stop", step=None):
    def mse(batch, ctx):
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    task = Task(
        model=model, step=step or mse, data=data, config={"what": "guard"},
        optimizer=OptimizerSpec(param_groups=[{"params": list(model.parameters()), "lr": 1e-2}],
                                weight_decay=0.1),
    )  # fmt: skip
    loop = LoopConfig(epochs=epochs, nonfinite=nonfinite)
    return fit(task, loop=loop, run=RunOptions(run_dir=run_dir, progress=False), device="cpu")


def _model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_a_nan_batch_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    def step(batch, ctx):  # finite in epoch 1; NaN at the third step of epoch 2
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        return loss * math.nan if (ctx.epoch, ctx.step) == (1, 2) else loss

    model = _model()
    with pytest.raises(NonFiniteError) as err:
        _fit(model, _data(), tmp_path, epochs=3, step=step)
    msg = str(err.value)
    assert "\n" not in msg
    assert "non-finite loss (nan) at epoch 2, step 3" in msg
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["checkpoint_epoch0000.pt"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_skip_leaves_the_weights_as_if_the_poisoned_steps_never_ran(tmp_path):
    """Every step of epoch 2 is NaN: the weights after 2 epochs equal those after 1 (AdamW's
    decay and momentum included), and all 6 skips are counted in the metrics log."""

    def step(batch, ctx):
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        return loss + math.inf if ctx.epoch == 1 else loss

    model = _model()
    history = _fit(model, _data(), tmp_path / "a", epochs=2, nonfinite="skip", step=step)
    ref = _model()
    _fit(ref, _data(), tmp_path / "b", epochs=1)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [h["skipped"] for h in history] == [0, 6]
    lines = [json.loads(s) for s in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [e["skipped"] for e in lines] == [0, 6]


def test_a_sample_with_nan_is_skipped_once_per_epoch(tmp_path):
    model = _model()
    history = _fit(model, _data(poison=4), tmp_path, epochs=2, nonfinite="skip")
    assert [h["skipped"] for h in history] == [1, 1]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(h["loss"]) for h in history)  # the mean is over the good steps


def test_the_error_names_the_term_and_the_gradient_norm(tmp_path):
    model = _model()

    def terms(batch, ctx):
        x, y = batch
        return {"mse": ((model(x) - y) ** 2).mean(), "gate_ce": torch.tensor(math.inf)}

    with pytest.raises(NonFiniteError, match=r"non-finite gate_ce \(inf\) at epoch 1, step 1"):
        _fit(model, _data(), tmp_path / "t", epochs=1, step=terms)

    def sqrt_at_zero(batch, ctx):  # the value is 0, its gradient is infinite
        return torch.sqrt((model.weight * 0).sum())

    with pytest.raises(NonFiniteError, match=r"non-finite gradient norm \(nan\) at epoch 1"):
        _fit(model, _data(), tmp_path / "g", epochs=1, step=sqrt_at_zero)
