"""``medmoe expert train``: finetune a copy of the general mask decoder on one task."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--clicks", type=int, default=3, help="click iterations per step")
    t.add_argument("--crops-per-target", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from medmoe.errors import InputError
    from medmoe.moe import EmbeddingCache, ExpertTrainConfig, samples_from_dataset, train_expert
    from medmoe.sam3d import load_sam3d
    from medmoe.utils import file_sha256, seed_everything

    if args.epochs < 1 or args.clicks < 1:
        raise InputError("--epochs and --clicks must be >= 1")
    seed_everything(args.seed)
    base = load_sam3d(args.base)
    sha = file_sha256(args.base)
    samples = samples_from_dataset(
        args.dataset,
        labels=args.labels,
        task_of=lambda n: 1,
        crops_per_target=args.crops_per_target,
        seed=args.seed,
    )
    labels = sorted({s.name for s in samples})
    cache = EmbeddingCache(
        root=args.cache or args.out / "cache", base_sha256=sha, encoder=base.image_encoder
    )
    cfg = ExpertTrainConfig(epochs=args.epochs, lr=args.lr, clicks=args.clicks, seed=args.seed)
    out = train_expert(
        base=base,
        base_sha256=sha,
        samples=samples,
        name=args.name,
        labels=labels,
        out_dir=args.out,
        cache=cache,
        config=cfg,
        resume=args.resume,
    )
    print(f"expert {args.name!r} written to {out} ({len(samples)} crops, labels {labels})")
    return 0
