"""``medmoe fundus``: the multi-task MoE for retinal fundus images (train, evaluate, predict)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--size {text!r}: expected H,W such as 712,1072"
        ) from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError("--size must be at least 32,32")
    return h, w


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fundus", help="multi-task MoE for fundus images: DR grade, DME risk, 5 lesion masks"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("train", help="train (runs under torchrun; --resume continues)")
    t.add_argument("--data", required=True, help="an IDRiD root folder, or 'synthetic'")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--size", type=_size, default=(712, 1072), help="H,W (the report: 712,1072)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--experts", type=int, default=3)
    t.add_argument("--top-p", type=float, default=0.5)
    t.add_argument(
        "--tasks",
        nargs="+",
        choices=("dr", "dme", "seg"),
        default=["dr", "dme", "seg"],
        help="a subset trains a single-task baseline with the same code",
    )
    t.add_argument("--shared-aspp", action="store_true")
    t.add_argument("--backbone-width", type=int, default=64, help="64 is ResNet-50")
    t.add_argument("--head-width", type=int, default=256, help="channels of the expert heads")
    t.add_argument(
        "--resnet-weights", type=Path, help="local torchvision resnet50-*.pth (weights_only)"
    )
    t.add_argument("--lr-backbone", type=float, default=3e-5, help="AdamW lr (the report: 3e-5)")
    t.add_argument("--lr-heads", type=float, default=3e-4, help="AdamW lr (the report: 3e-4)")
    # the names of medmoe.train.schedule.SCHEDULES, written out: the CLI parses before torch loads
    t.add_argument(
        "--lr-schedule", choices=("constant", "cosine"), default="constant", help="per step"
    )
    t.add_argument(
        "--expert-loss",
        type=float,
        default=1.0,
        help="weight of each expert's own loss during the dense warm-up (0: the report's recipe)",
    )
    t.add_argument("--synthetic-count", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true")
    t.set_defaults(func=run_train)
    e = actions.add_parser("evaluate", help="accuracy/kappa for grades; IoU/Dice/AUPR for lesions")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--data", required=True, help="an IDRiD root folder, or 'synthetic'")
    e.add_argument("--split", choices=("train", "test"), default="test")
    e.add_argument("--dense", action="store_true", help="run every expert (default: top-p)")
    e.set_defaults(func=run_evaluate)
    pr = actions.add_parser(
        "predict", help="grades, lesion masks (PNG) and an overlay for one photograph"
    )
    pr.add_argument("image", type=Path)
    pr.add_argument("--model", type=Path, required=True)
    pr.add_argument("--out", type=Path, required=True)
    pr.set_defaults(func=run_predict)


def _load_data(spec: str, *, split: str, size, count: int, seed: int):
    from medmoe.multitask.train import idrid_data, synthetic_data

    if spec == "synthetic":
        return synthetic_data(
            n_cls=count, n_seg=count, size=size, seed=seed + (0 if split == "train" else 1)
        )
    return idrid_data(spec, split=split, size=size)


def run_train(args: argparse.Namespace) -> int:
    from medmoe.errors import InputError
    from medmoe.multitask.artifact import save_fundus_model
    from medmoe.multitask.model import MultiTaskConfig
    from medmoe.multitask.train import FundusTrainConfig, plot_curves, train_fundus

    if args.epochs < 1 or args.experts < 1 or not 0 < args.top_p <= 1:
        raise InputError("--epochs and --experts must be >= 1 and --top-p in (0, 1]")
    if not (args.lr_backbone > 0 and args.lr_heads > 0 and args.expert_loss >= 0):
        raise InputError("--lr-backbone and --lr-heads must be > 0 and --expert-loss >= 0")
    data = _load_data(
        args.data, split="train", size=args.size, count=args.synthetic_count, seed=args.seed
    )
    mc = MultiTaskConfig(
        num_experts=args.experts,
        top_p=args.top_p,
        tasks=tuple(args.tasks),
        shared_aspp=args.shared_aspp,
        backbone_width=args.backbone_width,
        head_width=args.head_width,
        image_size=args.size,
    )
    model, history = train_fundus(
        model_config=mc,
        config=FundusTrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr_backbone=args.lr_backbone,
            lr_heads=args.lr_heads,
            lr_schedule=args.lr_schedule,
            expert_loss=args.expert_loss,
            seed=args.seed,
        ),
        data=data,
        out_dir=args.out,
        resume=args.resume,
        init_weights=args.resnet_weights,
    )
    save_fundus_model(model, args.out)
    plot_curves(history, args.out / "curves.png", "training loss")
    print(f"model written to {args.out} (final loss {history[-1]['loss']:.4f})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from medmoe.multitask.artifact import load_fundus_model
    from medmoe.multitask.train import evaluate_fundus

    model = load_fundus_model(args.model)
    data = _load_data(
        args.data, split=args.split, size=tuple(model.config.image_size), count=32, seed=0
    )
    res = evaluate_fundus(model, data, dense=args.dense)
    for k, v in res.items():
        if k == "experts_used":
            print("mean experts used: " + ", ".join(f"{t} {n:.2f}" for t, n in v.items()))
        else:
            print(f"{k:10s} {v:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from medmoe.multitask.artifact import load_fundus_model
    from medmoe.multitask.predict import predict_photo, read_photo, write_prediction

    model = load_fundus_model(args.model)
    image = read_photo(args.image, tuple(model.config.image_size))
    res = predict_photo(model, image)
    write_prediction(res, image, model.config.lesions, args.out)
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{t} grade {res[t]['grade']}" for t in ("dr", "dme") if t in res)
    )
    return 0
