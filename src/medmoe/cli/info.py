"""``medmoe info``: versions, device and registered models."""

from __future__ import annotations

import argparse
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, the compute device and registered models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import monai
    import numpy
    import torch

    import medmoe
    from medmoe.sam3d import SAM3D_CONFIGS
    from medmoe.sam3d.pretrained import PRETRAINED, WEIGHTS_DIR

    print(f"medmoe   {medmoe.__version__}")
    print(f"python   {platform.python_version()}")
    print(f"torch    {torch.__version__} (threads: {torch.get_num_threads()})")
    print(f"monai    {monai.__version__}")
    print(f"numpy    {numpy.__version__}")
    for line in torch_lines(torch):
        print(line)
    print("models:")
    for name, cfg in SAM3D_CONFIGS.items():
        print(f"  {name:<14} {cfg.describe()}")
    print("pretrained:")
    for name, entry in PRETRAINED.items():
        shipped = (WEIGHTS_DIR / entry.file).is_file()
        state = f"sha256 {entry.sha256}" if shipped else "not shipped in this build"
        print(f"  {name:<14} {entry.arch}, {state}")
    return 0


def torch_lines(torch) -> list[str]:
    """What torch was built for and which devices it sees: the lines a GPU user checks first
    (a CPU build on a GPU machine shows here as ``build cpu`` with ``devices cpu``)."""
    cuda = torch.version.cuda
    build = f"CUDA {cuda}" if cuda else "cpu"
    if cuda and torch.backends.cudnn.is_available():
        build += f", cuDNN {torch.backends.cudnn.version()}"
    lines = [f"build    {build}"]
    count = torch.cuda.device_count() if cuda else 0
    if count == 0:
        why = " (CUDA build, but no GPU is visible)" if cuda else ""
        return [*lines, f"devices  cpu{why}"]
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        gib = props.total_memory / 2**30
        lines.append(f"devices  cuda:{i} {props.name} ({gib:.0f} GiB)" if i == 0 else
                     f"         cuda:{i} {props.name} ({gib:.0f} GiB)")  # fmt: skip
    return lines
