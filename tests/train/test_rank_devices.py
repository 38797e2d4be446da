"""``--device auto`` or ``cuda`` under torchrun: each process gets the GPU of its LOCAL_RANK
whenever the device is resolved (the CLI resolves it before the process group exists), not
cuda:0 for all. CUDA is faked: the test checks the choice, not the GPU."""

from __future__ import annotations

import pytest
import torch

from medmoe.errors import InputError
from medmoe.utils.device import resolve_device


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.mark.parametrize("spec", ["auto", "cuda", "cuda:0", "cuda:3"])
def test_each_rank_takes_its_local_gpu(four_gpus, monkeypatch, spec):
    monkeypatch.setenv("WORLD_SIZE", "4")
    for local in range(4):
        monkeypatch.setenv("LOCAL_RANK", str(local))
        assert resolve_device(spec) == torch.device("cuda", local)


def test_one_process_keeps_what_it_asked_for(four_gpus, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_rank_without_its_gpu_is_refused(four_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(InputError, match="only 4 CUDA device"):
        resolve_device("auto")
