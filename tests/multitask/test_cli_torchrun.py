"""``medmoe fundus train`` under torchrun: two CPU processes (gloo) must end with identical
weights (DDP keeps them in step; each rank trains on its own half of the batches), write one
checkpoint per epoch, and ``--resume`` must continue from the last one."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file


def torchrun(*args, env=None):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",  # a local rendezvous on a free port: never a fixed one
        "-m",
        "medmoe",
        *args,
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)


def test_fundus_train_under_torchrun_and_resume(tmp_path):
    out = tmp_path / "model"
    common = ["fundus", "train", "--data", "synthetic", "--out", str(out), "--size", "32,48"]
    common += ["--backbone-width", "8", "--head-width", "16", "--synthetic-count", "8"]
    common += ["--batch-size", "2"]
    r = torchrun(*common, "--epochs", "2", env={"MEDMOE_DUMP_RANK_WEIGHTS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = load_file(str(out / "model_rank0.safetensors"))
    w1 = load_file(str(out / "model_rank1.safetensors"))
    assert w0.keys() == w1.keys() and len(w0) > 100
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert ckpts == ["checkpoint_epoch0000.pt", "checkpoint_epoch0001.pt"]
    # the weights differ from initialisation: the ranks trained, they did not just agree on nothing
    from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE

    torch.manual_seed(0)
    init = MultiTaskMoE(
        config=MultiTaskConfig(backbone_width=8, head_width=16, image_size=(32, 48))
    ).state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0 if k in init)

    r = torchrun(*common, "--epochs", "3", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch 1/3" not in r.stderr and "epoch 3/3" in r.stderr
    assert (out / "checkpoints" / "checkpoint_epoch0002.pt").is_file()
    assert "model written to" in r.stdout
