"""The MoE commands end to end on a tiny dataset, with the gate trained by two torchrun
processes (gloo on CPU): both ranks must hold identical gate weights, and --resume continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
import torch
from safetensors.torch import load_file

from medmoe.cli.main import main
from medmoe.data import write_nnunet_dataset
from medmoe.data.synthetic import BALL_AND_BOX_LABELS, ball_and_box_cases
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe_cli")
    torch.manual_seed(0)
    save_sam3d_checkpoint(build_sam3d("tiny"), root / "base.pth")
    cases = ball_and_box_cases(cases=3, size=40)
    write_nnunet_dataset(root / "ds", cases, BALL_AND_BOX_LABELS)
    return root


def run_cli(*args, env=None, torchrun=False):
    cmd = [sys.executable, "-m", "medmoe", *args]
    if torchrun:
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
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


def test_expert_moe_torchrun_resume_and_bundle_commands(setup, tmp_path, capsys):
    root = setup
    _train_expert(root)
    common = [
        "moe", "train", "--base", str(root / "base.pth"), "--expert", str(root / "expert"),
        "--dataset", str(root / "ds"), "--out", str(root / "bundle"), "--lr-gate", "1e-3",
        "--cache", str(root / "cache"), "--warmup-epochs", "1", "--balance-classes",
        "--update-top1-expert", "--lr-expert", "1e-2",
    ]  # fmt: skip
    _train_moe_under_torchrun(root, common)
    _resume_then_refuse_another_config(root, common)
    _bundle_commands(root, tmp_path, capsys)


def _ok(r) -> None:
    assert r.returncode == 0, [
        ln for ln in r.stderr.splitlines() if "rank1" in ln or "Error" in ln
    ][-12:]


def _train_expert(root: Path) -> None:
    r = run_cli(
        "expert", "train", "--name", "boxes", "--dataset", str(root / "ds"), "--labels", "box",
        "--base", str(root / "base.pth"), "--out", str(root / "expert"), "--epochs", "2",
        "--click-iterations", "1", "--keep-checkpoints", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (root / "expert" / "expert.json").is_file()
    assert (root / "expert" / "decoder.safetensors").is_file()
    kept = sorted(p.name for p in (root / "expert" / "checkpoints").glob("*.pt"))
    assert kept == ["checkpoint_epoch0001.pt"]  # --keep-checkpoints 1: the latest only
    log = (root / "expert" / "checkpoints" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1]  # one line per epoch


def _train_moe_under_torchrun(root: Path, common: list[str]) -> None:
    """The paper's variant: the top-1 expert is finetuned with the gate. Each rank routes its
    own crops, so without an all-reduce of the experts' gradients the ranks' experts drift
    apart. The gate's warm-up (one DDP call per step) runs first, on both ranks."""
    r = run_cli(*common, "--epochs", "2", env={"MEDMOE_DUMP_RANK_WEIGHTS": "1"}, torchrun=True)
    _ok(r)
    w0 = load_file(str(root / "bundle" / "gate_rank0.safetensors"))
    w1 = load_file(str(root / "bundle" / "gate_rank1.safetensors"))
    assert w0.keys() == w1.keys()
    expert_keys = [k for k in w0 if k.startswith("experts.")]
    assert expert_keys and any(k.startswith("gate.") for k in w0)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    before = load_file(str(root / "expert" / "decoder.safetensors"))
    moved = [k for k in expert_keys if not torch.equal(w0[k], before[k.split(".", 2)[2]])]
    assert moved, "the top-1 expert was not trained"
    ckpts = sorted(p.name for p in (root / "bundle" / "checkpoints").glob("*.pt"))
    assert ckpts == ["checkpoint_epoch0000.pt", "checkpoint_epoch0001.pt"]
    warm = root / "bundle" / "warmup" / "checkpoints" / "checkpoint_epoch0000.pt"
    assert warm.is_file() and "gate warm-up epoch 1/1" in r.stderr


def _resume_then_refuse_another_config(root: Path, common: list[str]) -> None:
    """One more epoch from the epoch-1 checkpoint, not from scratch (and no second warm-up);
    resuming with another learning rate is refused in one line, before any training."""
    r = run_cli(*common, "--epochs", "3", "--resume", torchrun=True)
    _ok(r)
    assert "gate epoch 1/3" not in r.stderr and "gate epoch 3/3" in r.stderr
    assert "gate warm-up epoch" not in r.stderr
    assert (root / "bundle" / "checkpoints" / "checkpoint_epoch0002.pt").is_file()
    r = run_cli(*common, "--epochs", "4", "--lr-gate", "2e-3", "--resume")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "another configuration" in r.stderr and "lr_gate" in r.stderr
    # the error is one line; before it, only the progress of the crops (re-)read from the cache
    said = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and "crops encoded" not in ln]
    assert len(said) == 1, r.stderr


def _bundle_commands(root: Path, tmp_path: Path, capsys) -> None:
    """Bundle management and segmentation with the bundle."""
    assert main(["moe", "list", "--moe", str(root / "bundle")]) == 0
    assert "expert 1: boxes" in capsys.readouterr().out
    out = tmp_path / "mask.nii.gz"
    image = root / "ds" / "imagesTr" / "c0_0000.nii.gz"
    argv = ["segment", "--image", str(image), "--point", "29,27,20"]
    assert main([*argv, "--moe", str(root / "bundle"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "expert:" in printed and "s_top" in printed
    assert nib.load(out).shape == (40, 40, 40)
    last = ["moe", "remove-expert", "--moe", str(root / "bundle"), "--name", "boxes"]
    assert main(last) == 2  # the last expert
    assert "last expert" in capsys.readouterr().err
