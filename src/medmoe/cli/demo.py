"""``medmoe demo``: the main job. ``mri`` (default) runs SAM-Med3D-MoE's weak-category
experiment on two real brains (trained on one, evaluated on both); ``fundus`` runs the
multi-task fundus MoE on synthetic images."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the SAM-Med3D-MoE experiment on two real brains (CPU, under 20 minutes)"
    )
    p.add_argument(
        "which", nargs="?", choices=("mri", "fundus"), default="mri",
        help="mri: SAM-Med3D-MoE on two brains (default); fundus: the multi-task fundus MoE",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a small run (about 2 minutes), for CI")
    p.add_argument("--out", type=Path, help="output folder (default runs/demo or runs/demo-fundus)")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.which == "fundus":
        from medmoe.demo.fundus import run_fundus_demo

        run_fundus_demo(
            quick=args.quick, out_dir=args.out or Path("runs/demo-fundus"), device=args.device
        )
        return 0
    from medmoe.demo.run import run_mri_demo

    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    run_mri_demo(quick=args.quick, out_dir=out, device=args.device)
    return 0
