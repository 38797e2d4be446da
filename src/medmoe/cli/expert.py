"""``medmoe expert train``: finetune a copy of the general mask decoder on one task."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import load_base_for_training, positive_float, positive_int
from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("expert", help="task experts: finetune a mask decoder on a new task")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("train", help="train an expert (runs unchanged under torchrun)")
    t.add_argument("--name", required=True)
    t.add_argument("--dataset", type=Path, required=True)
    t.add_argument("--labels", nargs="*", help="label names or values of the task (default: all)")
    t.add_argument("--base", type=Path, required=True, help="the general SAM-Med3D checkpoint")
    t.add_argument("--out", type=Path, required=True, help="expert directory")
    t.add_argument("--cache", type=Path, help="embedding cache (default: OUT/cache)")
    t.add_argument("--epochs", type=positive_int, default=10)
    t.add_argument("--lr", type=positive_float, default=1e-4)
    t.add_argument("--batch-size", type=positive_int, default=4, help="crops per step")
    t.add_argument("--clicks", type=positive_int, default=3, help="click iterations per crop")
    t.add_argument("--crops-per-target", type=positive_int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.add_argument(
        "--keep-checkpoints",
        type=positive_int,
        metavar="N",
        help="keep only the latest N epoch checkpoints (default: all; --resume needs one)",
    )
    add_device_arg(t)
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from medmoe.moe import (
        ExpertTrainConfig,
        iter_dataset_crops,
        prepare_crops,
        train_expert,
    )

    cfg = ExpertTrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        clicks=args.clicks,
        seed=args.seed,
    )
    base, sha, cache = load_base_for_training(args)
    device = cache.device
    crops = iter_dataset_crops(
        args.dataset,
        labels=args.labels,
        task_of=lambda n: 1,
        crops_per_target=args.crops_per_target,
        seed=args.seed,
    )
    data = prepare_crops(crops, cache=cache, device=device)
    labels = sorted({r.name for r in data.records})
    out = train_expert(
        base=base,
        base_sha256=sha,
        data=data,
        name=args.name,
        labels=labels,
        out_dir=args.out,
        config=cfg,
        resume=args.resume,
        keep_checkpoints=args.keep_checkpoints,
        device=device,
    )
    print(f"expert {args.name!r} written to {out} ({len(data)} crops, labels {labels})")
    return 0
