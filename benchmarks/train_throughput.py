"""Training throughput: crops per second of expert training on the shared engine.

Generates ``--crops`` 128^3 crops (a bright ellipsoid on noise), encodes them once into the
embedding cache (not timed), then runs one epoch of expert training (tiny SAM-Med3D,
``--click-iterations`` simulated clicks per crop, no validation split) at each batch size and
reports crops/s from the engine's own epoch time (``metrics.jsonl``: the loop alone, no
encoding, no checkpoint). Each run appends its lines, labelled with ``--label``, the machine
and the commit, to ``benchmarks/results/train_throughput_<device>.txt``, so a "before" and an
"after" of a change to the click loop stand side by side in one file.

    python benchmarks/train_throughput.py --label before          # CPU
    python benchmarks/train_throughput.py --device cuda --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_memory import generated_crops  # noqa: E402 (a sibling script)

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """The machine's name and CPU (and GPU, where one is used)."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return f"{platform.node()}, {cpu}"


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return run.stdout.strip() or "unknown"


def crops_per_second(data, base, *, batch_size: int, clicks: int, device, root: Path) -> float:
    from medmoe.moe import ExpertTrainConfig, train_expert
    from medmoe.train.task import Runtime

    cfg = ExpertTrainConfig(epochs=1, batch_size=batch_size, clicks=clicks, box_prob=0.5,
                            val_fraction=0.0)  # fmt: skip
    out = root / f"expert_b{batch_size}"
    train_expert(base=base, base_sha256="0" * 64, data=data, name="blob", labels=["blob"],
                 out_dir=out, config=cfg, progress=False, device=device,
                 runtime=Runtime(workers=0))  # fmt: skip
    (entry,) = [json.loads(s) for s in (out / "checkpoints" / "metrics.jsonl").open()]
    return len(data) / entry["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=16, help="crops in the epoch (16)")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated (1,4)")
    parser.add_argument("--click-iterations", type=int, default=3, help="clicks per crop (3)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--label", default="now", help="what this run measures (before, after)")
    args = parser.parse_args()

    import torch

    from medmoe.moe import EmbeddingCache, prepare_crops
    from medmoe.sam3d import build_sam3d

    device = torch.device(args.device)
    torch.manual_seed(0)
    base = build_sam3d("tiny").eval().to(device)
    lines = [
        f"[{args.label}] commit {commit()}; machine: {machine()}"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads"
        + f"; load average {os.getloadavg()[0]:.1f} at the start",
        f"[{args.label}] expert training, tiny SAM-Med3D, {args.crops} crops, "
        f"{args.click_iterations} clicks per crop, 1 epoch, workers 0, {device.type}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = EmbeddingCache(
            root=root / "cache", base_sha256="0" * 64, encoder=base.image_encoder
        )
        data = prepare_crops(generated_crops(args.crops), cache=cache, device=device)
        for b in (int(x) for x in args.batch_sizes.split(",")):
            rate = crops_per_second(data, base, batch_size=b, clicks=args.click_iterations,
                                    device=device, root=root)  # fmt: skip
            lines.append(f"[{args.label}] batch {b:>2}: {rate:7.3f} crops/s")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    path = RESULTS / f"train_throughput_{device.type}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
