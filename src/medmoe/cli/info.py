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

    device = "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu"
    print(f"medmoe   {medmoe.__version__}")
    print(f"python   {platform.python_version()}")
    print(f"torch    {torch.__version__} (threads: {torch.get_num_threads()})")
    print(f"monai    {monai.__version__}")
    print(f"numpy    {numpy.__version__}")
    print(f"device   {device}")
    print("models:")
    for name, cfg in SAM3D_CONFIGS.items():
        print(f"  {name:<14} {cfg.describe()}")
    return 0
