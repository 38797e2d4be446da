"""GPU smoke run: every device path of medmoe once on CUDA, through the command line a user runs.

One expert epoch, one gate epoch (with ``--update-top1-expert``), one fundus epoch and a
``segment`` (with the MoE bundle), all with ``--device cuda``, on a small generated dataset and a
random-weight ``tiny`` SAM-Med3D. Prints each stage's wall time and the peak GPU memory, and
writes them to ``benchmarks/results/gpu_smoke_<gpu>.txt``. CI has no GPU; run this whenever one
is available:

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def make_dataset(root: Path) -> Path:
    from medmoe.data import write_nnunet_dataset
    from medmoe.data.synthetic import BALL_AND_BOX_LABELS, ball_and_box_cases

    cases = ball_and_box_cases(cases=4, size=48)
    write_nnunet_dataset(root / "ds", cases, BALL_AND_BOX_LABELS)
    return root / "ds"


def stage(name: str, argv: list[str], lines: list[str]) -> None:
    from medmoe.cli.main import main

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rc = main(argv)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    line = f"{name:<14} rc={rc}  {wall:7.1f} s  peak GPU memory {peak:8.1f} MiB"
    print(line, flush=True)
    lines.append(line)
    if rc != 0:
        raise SystemExit(f"{name} failed with exit code {rc}")


def main() -> int:
    # --device cpu: a dry run of the same commands (checks the script on a machine without GPU)
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu-dry-run"
    lines = [f"device: {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        save_sam3d_checkpoint(build_sam3d("tiny"), root / "base.pth")
        ds = make_dataset(root)
        base, dev = ["--checkpoint", str(root / "base.pth")], ["--device", device]
        stage("expert epoch", ["expert", "train", "--name", "box", "--dataset", str(ds),
              "--labels", "box", *base, "--out", str(root / "expert"), "--epochs", "1", *dev],
              lines)  # fmt: skip
        stage("gate epoch", ["moe", "train", *base, "--expert", str(root / "expert"),
              "--dataset", str(ds), "--out", str(root / "bundle"), "--epochs", "1",
              "--lr-gate", "1e-3", "--update-top1-expert", "--warmup-epochs", "1",
              "--balance-classes", *dev], lines)  # fmt: skip
        stage("fundus epoch", ["fundus", "train", "--data", "synthetic", "--out",
              str(root / "fundus"), "--epochs", "1", "--size", "128,128", *dev], lines)  # fmt: skip
        image = ds / "imagesTr" / "c0_0000.nii.gz"
        stage("segment (MoE)", ["segment", "--image", str(image), "--point", "33,32,24",
              "--moe", str(root / "bundle"), "--out", str(root / "mask.nii.gz"), *dev],
              lines)  # fmt: skip
    if not device.startswith("cuda"):
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "_" for c in gpu.lower()).strip("_")
    (RESULTS / f"gpu_smoke_{name}.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
