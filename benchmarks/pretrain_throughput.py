"""Pretraining throughput: steps/s and crops/s of ``medmoe pretrain``'s step with augmentation on,
and the DataLoader's share of a step.

The same pieces as ``medmoe pretrain``: crops made on the fly from the MNI152 T1 by
:class:`medmoe.pretrain.data.BrainCrops` (jitter, rotation/scaling, flip, bias field, gamma,
noise) in DataLoader workers, and :class:`medmoe.pretrain.step.PretrainStep` (encoder, decoder,
``--click-iterations`` simulated clicks) with AdamW, one crop per step as in the shipped recipe.
Timed per step: the wait for the next batch (the loader's share: what the workers could not hide)
and the whole step. The first ``--warmup`` steps (worker start-up) are not counted. Crop making
is also timed alone, in this process, to show what the workers have to hide.

Structures come from one atlas (Neuromorphometrics by default) so that start-up stays short;
a crop costs the same whatever atlas its structure comes from.

    python benchmarks/pretrain_throughput.py        # writes benchmarks/results/pretrain_throughput_cpu.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    info = Path("/proc/cpuinfo")
    names = []
    if info.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
    cpu = f"{names[0]} x{len(names)}" if names else platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.node()}, {cpu}, torch {torch.__version__}, "
            f"threads {torch.get_num_threads()}, load average (1 min) {load:.1f}")  # fmt: skip


def build(args):
    from medmoe.data.io import load_volume
    from medmoe.pretrain.data import BrainCrops
    from medmoe.pretrain.step import PretrainStep
    from medmoe.pretrain.structures import load_structures, template_path
    from medmoe.sam3d import build_sam3d

    structures, _ = load_structures([args.atlas])
    data = BrainCrops(t1=load_volume(template_path()), structures=structures, seed=0)
    torch.manual_seed(0)
    model = build_sam3d(args.arch).train().to(args.device)
    step = PretrainStep(model=model, clicks=args.click_iterations, box_prob=0.5)
    return data, model, step


def time_crops(data, n: int) -> float:
    """Seconds per crop made in this process (no workers)."""
    t0 = time.perf_counter()
    for i in range(n):
        data[i]
    return (time.perf_counter() - t0) / n


def time_steps(data, model, step, args) -> tuple[float, float]:
    """(seconds per step, seconds per step spent waiting for the loader), after the warm-up."""
    from torch.utils.data import DataLoader

    from medmoe.train.task import identity_collate

    loader = DataLoader(data, batch_size=1, shuffle=True, num_workers=args.workers,
                        collate_fn=identity_collate,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    # the pretraining step reads only the device and the click rng from the engine's context
    ctx = SimpleNamespace(device=torch.device(args.device), rng=np.random.default_rng(0))
    it = iter(loader)
    wait = total = 0.0
    for k in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = step(batch, ctx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if k >= args.warmup:
            wait += t1 - t0
            total += t2 - t0
    return total / args.steps, wait / args.steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="tiny")
    p.add_argument("--atlas", default="neuromorphometrics")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (as the shipped run)")
    p.add_argument("--click-iterations", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    data, model, step = build(args)
    crop_s = time_crops(data, min(args.steps, 10))
    step_s, wait_s = time_steps(data, model, step, args)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    out = args.out or RESULTS / f"pretrain_throughput_{kind}.txt"
    lines = [
        f"machine: {machine()}",
        f"arch {args.arch}, {args.click_iterations} click iterations per crop, batch 1, "
        f"{args.workers} DataLoader worker(s), augmentation on, {args.steps} timed steps "
        f"after {args.warmup}",
        f"steps/s {1 / step_s:.3f} | crops/s {1 / step_s:.3f} | s/step {step_s:.3f}",
        f"loader wait per step {wait_s:.3f} s: the DataLoader's share of a step {wait_s / step_s:.1%}",
        f"a crop made alone in this process: {crop_s:.3f} s ({crop_s / step_s:.2f} of a step)",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
