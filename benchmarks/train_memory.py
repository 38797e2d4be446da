"""Memory of expert training is bounded by the batch, not by the dataset.

Runs the same expert training (tiny SAM-Med3D, batch size 4, one epoch, one click, CPU) on a
generated set of 200 crops and of 1,000 crops, each in a fresh process under
``/usr/bin/time -v``, and prints both peak resident sizes and their ratio (target: <= 1.10).
Crops are generated one at a time, encoded once into the embedding cache and their labels
stored on disk (``prepare_crops``); training reads them back per batch.

    python benchmarks/train_memory.py            # writes benchmarks/results/train_memory_cpu.txt
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "train_memory_cpu.txt"


def generated_crops(n: int, *, seed: int = 0):
    """``n`` 128^3 crops of a bright ellipsoid on noise, yielded one at a time."""
    from medmoe.data.training import Sample

    grid = np.indices((128, 128, 128), dtype=np.float32).transpose(1, 2, 3, 0) - 64
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        radii = rng.uniform(8, 20, 3)
        label = (((grid - rng.uniform(-20, 20, 3)) / radii) ** 2).sum(-1) <= 1
        image = (rng.normal(0, 0.3, label.shape) + 2.0 * label).astype(np.float32)
        yield Sample(f"gen-{seed}-{i}", image, label, 1, "blob")


def worker(n: int, root: Path) -> None:
    import torch

    from medmoe.moe import EmbeddingCache, ExpertTrainConfig, prepare_crops, train_expert
    from medmoe.sam3d import build_sam3d

    torch.manual_seed(0)
    base = build_sam3d("tiny").eval()
    cache = EmbeddingCache(root=root / "cache", base_sha256="0" * 64, encoder=base.image_encoder)
    data = prepare_crops(generated_crops(n), cache=cache, device="cpu")
    cfg = ExpertTrainConfig(epochs=1, batch_size=4, clicks=1, box_prob=0.0, val_fraction=0.0)
    train_expert(
        base=base, base_sha256="0" * 64, data=data, name="blob", labels=["blob"],
        out_dir=root / "expert", config=cfg, progress=False, device="cpu",
    )  # fmt: skip


def measure(n: int) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of a worker process on ``n`` crops."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--worker", str(n), tmp]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"worker on {n} crops failed:\n{run.stderr[-2000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return kib / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("root", nargs="?", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1000)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.root)
        return
    small, t_small = measure(args.small)
    large, t_large = measure(args.large)
    ratio = large / small
    lines = [
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "expert training, tiny SAM-Med3D, batch 4, 1 epoch, 1 click, CPU; peak RSS by /usr/bin/time -v",
        f"{args.small:>5} crops: peak RSS {small:8.1f} MiB  ({t_small:.0f} s)",
        f"{args.large:>5} crops: peak RSS {large:8.1f} MiB  ({t_large:.0f} s)",
        f"ratio {args.large}/{args.small}: {ratio:.3f}  (target <= 1.10: {'PASS' if ratio <= 1.10 else 'MISS'})",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
