"""``--workers``, ``--precision``, ``--deterministic`` and ``--keep-checkpoints`` on every
SAM-Med3D trainer reach the engine's loop, and the loop saves them with each checkpoint."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medmoe.cli.common import runtime_of
from medmoe.cli.main import build_parser
from medmoe.errors import InputError
from medmoe.train.amp import autocast
from medmoe.train.checkpoint import epoch_checkpoints
from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit
from medmoe.train.task import Runtime

TRAINERS = {
    "pretrain": ["pretrain", "--out", "o"],
    "expert": [
        "expert",
        "train",
        "--name",
        "e",
        "--dataset",
        "d",
        "--checkpoint",
        "c",
        "--out",
        "o",
    ],
    "moe": ["moe", "train", "--checkpoint", "c", "--expert", "e", "--dataset", "d", "--out", "o"],
}


@pytest.mark.parametrize("argv", TRAINERS.values(), ids=TRAINERS)
def test_every_trainer_takes_the_runtime_options(argv):
    parser = build_parser()
    assert runtime_of(parser.parse_args(argv)) == Runtime()  # None, bf16, False
    args = parser.parse_args([*argv, "--workers", "3", "--precision", "fp32", "--deterministic"])
    assert runtime_of(args) == Runtime(workers=3, precision="fp32", deterministic=True)
    assert parser.parse_args([*argv, "--keep-checkpoints", "2"]).keep_checkpoints == 2


def test_keep_checkpoints_defaults():
    parser = build_parser()
    assert parser.parse_args(TRAINERS["pretrain"]).keep_checkpoints == 1  # only a resume reads
    assert parser.parse_args(TRAINERS["expert"]).keep_checkpoints is None  # every epoch


@pytest.mark.parametrize("bad", [["--precision", "fp16"], ["--workers", "-1"]])
def test_bad_runtime_options_exit_2_in_one_line(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*TRAINERS["expert"], *bad])
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_precision_picks_the_autocast_on_cuda_only():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" where it is not
        assert isinstance(autocast(torch.device("cuda"), "bf16"), torch.autocast)
    assert isinstance(autocast(torch.device("cuda"), "fp32"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), "bf16"), contextlib.nullcontext)
    with pytest.raises(InputError):
        LoopConfig(epochs=1, precision="fp16")


def test_the_loop_saves_its_runtime_and_restores_the_global_determinism(tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    model = nn.Linear(2, 1)
    data = TensorDataset(torch.ones(4, 2), torch.zeros(4, 1))
    seen = []

    def step(batch, ctx):
        seen.append(torch.are_deterministic_algorithms_enabled())
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    task = Task(
        model=model, step=step, data=data, config={"what": "runtime"},
        optimizer=OptimizerSpec(param_groups=[{"params": list(model.parameters()), "lr": 0.1}]),
    )  # fmt: skip
    runtime = Runtime(workers=0, precision="fp32", deterministic=True)
    loop = LoopConfig(epochs=1, batch_size=2, seed=1, **vars(runtime))
    fit(task, loop=loop, run=RunOptions(run_dir=tmp_path, progress=False), device="cpu")
    assert seen == [True, True]  # 4 samples, batch 2
    assert torch.are_deterministic_algorithms_enabled() == before
    (path,) = epoch_checkpoints(tmp_path)
    saved = torch.load(path, map_location="cpu", weights_only=True)["config"]["loop"]
    assert (saved["workers"], saved["precision"], saved["deterministic"]) == (0, "fp32", True)
