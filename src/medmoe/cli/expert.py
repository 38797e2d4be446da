"""``medmoe expert train``: finetune a copy of the general mask decoder on one task."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import (
    add_checkpoint_arg,
    add_trainer_args,
    load_base_for_training,
    positive_float,
    runtime_of,
    save_options,
)
from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("expert", help="task experts: finetune a mask decoder on a new task")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("train", help="train an expert (runs unchanged under torchrun)")
    t.add_argument("--name", required=True, help="the expert's name in bundles and reports")
    t.add_argument("--dataset", type=Path, required=True, help="nnU-Net v2 raw or SAM-Med3D layout")
    t.add_argument("--labels", nargs="*", help="label names or values of the task (default: all)")
    add_checkpoint_arg(t, help="the general SAM-Med3D checkpoint (frozen; its decoder is copied)")
    add_trainer_args(t, out_help="expert folder", epochs=10, click_iterations=3)
    t.add_argument("--lr", type=positive_float, default=1e-4, help="learning rate (1e-4)")
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
        clicks=args.click_iterations,
        seed=args.seed,
    )
    save_options(args)
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
        runtime=runtime_of(args),
        device=device,
    )
    print(f"expert {args.name!r} written to {out} ({len(data)} crops, labels {labels})")
    return 0
