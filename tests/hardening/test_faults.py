"""Faults: a training run killed with SIGKILL resumes to the same final weights as an
uninterrupted run; a killed writer never leaves a complete-looking file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medmoe.data import write_nnunet_dataset
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    save_sam3d_checkpoint(build_sam3d("tiny"), root / "base.pth")
    rng = np.random.default_rng(0)
    cases = {}
    for c in range(4):
        lab = np.zeros((36, 36, 36), np.uint8)
        lab[8 + c : 20 + c, 10:22, 12:24] = 1
        cases[f"c{c}"] = (
            (rng.normal(10, 1, lab.shape) + 10 * lab).astype(np.float32),
            lab,
            np.diag([1.5] * 3 + [1]),
        )
    write_nnunet_dataset(root / "ds", cases, {"box": 1})
    return root


def expert_cmd(root, out, *extra):
    return [
        sys.executable,
        "-m",
        "medmoe",
        "expert",
        "train",
        "--name",
        "x",
        "--dataset",
        str(root / "ds"),
        "--base",
        str(root / "base.pth"),
        "--out",
        str(out),
        "--epochs",
        "5",
        "--click-iterations",
        "2",
        "--crops-per-target",
        "3",
        "--lr",
        "1e-3",
        *extra,
    ]


def test_sigkill_then_resume_matches_an_uninterrupted_run(data):
    ref = subprocess.run(
        expert_cmd(data, data / "ref"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = data / "killed"
    proc = subprocess.Popen(
        expert_cmd(data, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = out / "checkpoints" / "checkpoint_epoch0000.pt"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.0))  # a random step of a later epoch
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "training finished before it could be killed; make the run longer"
    assert not (out / "expert.json").exists()
    assert not list(out.rglob("*.tmp")) or all(p.name.startswith(".") for p in out.rglob("*.tmp"))
    resumed = subprocess.run(
        expert_cmd(data, out, "--resume"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(data / "ref" / "decoder.safetensors"))
    b = load_file(str(out / "decoder.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


WRITER = """
import sys, time
from medmoe.utils.files import atomic_write
with atomic_write(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        for _ in range(10000):
            fh.write(b"x" * 100000)
            fh.flush()
            time.sleep(0.01)
"""


def test_killed_writer_leaves_no_complete_looking_file(tmp_path):
    dest = tmp_path / "mask.nii.gz"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest)], env=ENV)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".mask.nii.gz.*.tmp")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not dest.exists()
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(
        p.name.startswith(".mask.nii.gz.") and p.suffix == ".tmp" for p in leftovers
    )


def test_finished_output_gets_the_usual_permissions(tmp_path):
    """mkstemp's 0600 must not leak into results: a finished file is 0666 minus the umask
    (read at import, as a plain open() would apply it)."""
    from medmoe.utils.files import _UMASK, atomic_write

    with atomic_write(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"ok")
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o666 & ~_UMASK
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"ok")
    assert (tmp_path / "out.bin").stat().st_mode == plain.stat().st_mode
