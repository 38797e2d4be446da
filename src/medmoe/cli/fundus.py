"""``medmoe fundus``: the multi-task MoE for retinal fundus images (train, evaluate, predict)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import (
    add_config_arg,
    add_resume_args,
    add_runtime_args,
    add_seed_arg,
    nonneg_float,
    positive_float,
    positive_int,
    ranged,
    runtime_of,
    save_options,
)
from medmoe.utils.device import add_device_arg

top_p_float = ranged(float, low=0.0, low_open=True, high=1.0, what="a number in (0, 1]")
SPLIT_HELP = "train, val (carved from IDRiD's training set) or test (IDRiD's official test set)"


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


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", "--data", dest="data", required=True,
        help="an IDRiD root folder, or 'synthetic'",
    )  # fmt: skip
    add_seed_arg(
        p,
        help="training seed; synthetic data: split k of seed s is generator seed 3s+k, so no two "
        "splits of any seeds share an image",
    )
    p.add_argument(
        "--synthetic-count", type=positive_int, default=64, help="images of each kind (synthetic)"
    )
    add_device_arg(p)


def _train_parser(actions) -> None:
    t = actions.add_parser("train", help="train (runs under torchrun; --resume continues)")
    _data_args(t)
    t.add_argument("--out", type=Path, required=True, help="model folder to write")
    t.add_argument("--size", type=_size, default=(712, 1072), help="H,W (the report: 712,1072)")
    t.add_argument("--epochs", type=positive_int, default=10, help="passes over the images (10)")
    t.add_argument("--batch-size", type=positive_int, default=4, help="images per step (4)")
    t.add_argument(
        "--experts-per-task", dest="experts", type=positive_int, default=3,
        help="experts of each task (the report: 3)",
    )  # fmt: skip
    t.add_argument(
        "--top-p", type=top_p_float, default=0.5,
        help="dynamic top-p routing: keep the most probable experts until their mass reaches p",
    )  # fmt: skip
    t.add_argument(
        "--tasks",
        nargs="+",
        choices=("dr", "dme", "seg"),
        default=["dr", "dme", "seg"],
        help="a subset trains a single-task baseline with the same code",
    )
    t.add_argument(
        "--shared-aspp", action="store_true", help="one ASPP for every segmentation expert"
    )
    t.add_argument("--backbone-width", type=positive_int, default=64, help="64 is ResNet-50")
    t.add_argument("--head-width", type=positive_int, default=256, help="expert head channels")
    t.add_argument(
        "--resnet-weights", type=Path, help="local torchvision resnet50-*.pth (weights_only)"
    )
    t.add_argument("--lr-backbone", type=positive_float, default=3e-5, help="(report: 3e-5)")
    t.add_argument("--lr-heads", type=positive_float, default=3e-4, help="(report: 3e-4)")
    # the names of medmoe.train.schedule.SCHEDULES, written out: the CLI parses before torch loads
    t.add_argument(
        "--lr-schedule", choices=("constant", "cosine"), default="constant", help="per step"
    )
    t.add_argument(
        "--expert-loss",
        type=nonneg_float,
        default=1.0,
        help="weight of each expert's own loss during the dense warm-up (0: the report's recipe)",
    )
    # the names of medmoe.multitask.data.augment.AUGMENTS
    t.add_argument(
        "--augment",
        choices=("none", "report"),
        default="report",
        help="report: flip, rotation, rescaling, translation, contrast, blur (default)",
    )
    _routing_args(t)
    add_resume_args(t)
    add_runtime_args(t)
    add_config_arg(t)
    t.set_defaults(func=run_train)


def _routing_args(t: argparse.ArgumentParser) -> None:
    """The gate's auxiliary losses (defaults: medmoe.multitask.training.losses.AuxWeights) and top-p's
    renormalisation, so that a routing ablation needs no code."""
    t.add_argument("--aux-l1", type=nonneg_float, default=0.0, help="L1 sparsity weight")
    t.add_argument("--aux-entropy", type=nonneg_float, default=0.01, help="entropy weight")
    t.add_argument("--aux-balance", type=nonneg_float, default=0.01, help="load-balance weight")
    t.add_argument(
        "--no-renormalize",
        dest="renormalize",
        action="store_false",
        help="keep the kept experts' raw probabilities as weights (DynMoE) instead of "
        "renormalising them to sum to 1",
    )


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", dest="checkpoint", type=Path, required=True,
        help="a model folder written by 'medmoe fundus train'",
    )  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fundus", help="multi-task MoE for fundus images: DR grade, DME risk, 5 lesion masks"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    _train_parser(actions)
    e = actions.add_parser("evaluate", help="accuracy/kappa for grades; IoU/Dice/AUPR for lesions")
    _model_arg(e)
    _data_args(e)
    e.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="val",  # the test split only when asked for: choices are made on val
        help=SPLIT_HELP + "; default val",
    )
    e.add_argument("--batch-size", type=positive_int, default=8, help="images per step (8)")
    e.add_argument("--dense", action="store_true", help="run every expert (default: top-p)")
    e.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    e.set_defaults(func=run_evaluate)
    pr = actions.add_parser(
        "predict",
        help="grades, lesion masks (PNG) and an overlay for one photograph, at its own size "
        "(its field of view is padded to the model's aspect, never stretched)",
    )
    pr.add_argument("--image", type=Path, required=True, help="a fundus photograph (JPEG, PNG)")
    _model_arg(pr)
    pr.add_argument(
        "--out", type=Path, required=True, help="output folder (masks, overlay, grades JSON)"
    )
    add_device_arg(pr)
    pr.set_defaults(func=run_predict)


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from medmoe.multitask.data.splits import load_split
    from medmoe.multitask.model.artifact import save_fundus_model
    from medmoe.multitask.model.moe import MultiTaskConfig
    from medmoe.multitask.training.losses import AuxWeights
    from medmoe.multitask.training.train import FundusTrainConfig, plot_curves, train_fundus
    from medmoe.utils.device import resolve_device

    device = resolve_device(args.device)
    data = load_split(
        args.data, split="train", size=args.size, seed=args.seed, count=args.synthetic_count
    )
    mc = MultiTaskConfig(
        num_experts=args.experts,
        top_p=args.top_p,
        tasks=tuple(args.tasks),
        shared_aspp=args.shared_aspp,
        backbone_width=args.backbone_width,
        head_width=args.head_width,
        image_size=args.size,
        renormalize=args.renormalize,
    )
    aux = AuxWeights(l1=args.aux_l1, entropy=args.aux_entropy, balance=args.aux_balance)
    config = FundusTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_backbone=args.lr_backbone,
        lr_heads=args.lr_heads,
        lr_schedule=args.lr_schedule,
        expert_loss=args.expert_loss,
        augment=args.augment,
        seed=args.seed,
        aux=asdict(aux),
    )
    save_options(args)  # only once the data and the settings are known to be good
    model, history = train_fundus(
        model_config=mc,
        config=config,
        data=data,
        out_dir=args.out,
        resume=args.resume,
        init_weights=args.resnet_weights,
        device=device,
        runtime=runtime_of(args),
        keep_checkpoints=args.keep_checkpoints,
    )
    save_fundus_model(model, args.out)
    plot_curves(history, args.out / "curves.png", "training loss")
    print(f"model written to {args.out} (final loss {history[-1]['loss']:.4f})")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from medmoe.multitask.data.splits import load_split
    from medmoe.multitask.evaluation.evaluate import evaluate_fundus
    from medmoe.multitask.model.artifact import load_fundus_model
    from medmoe.utils.device import resolve_device
    from medmoe.utils.files import atomic_write

    model = load_fundus_model(args.checkpoint, device=resolve_device(args.device))
    size = tuple(model.config.image_size)
    data = load_split(
        args.data, split=args.split, size=size, seed=args.seed, count=args.synthetic_count
    )
    res = evaluate_fundus(model, data, batch_size=args.batch_size, dense=args.dense)
    print(f"split: {args.split}")
    for k, v in res.items():
        if k == "experts_used":
            print("mean experts used: " + ", ".join(f"{t} {n:.2f}" for t, n in v.items()))
        else:
            print(f"{k:10s} {v:.4f}")
    if args.out is not None:
        with atomic_write(args.out) as tmp:
            tmp.write_text(json.dumps({"split": args.split, **res}, indent=1))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from medmoe.multitask.evaluation.predict import predict_photo, read_photo, write_prediction
    from medmoe.multitask.model.artifact import load_fundus_model
    from medmoe.utils.device import resolve_device

    model = load_fundus_model(args.checkpoint, device=resolve_device(args.device))
    photo = read_photo(args.image)
    res = predict_photo(model, photo)
    write_prediction(res, photo, model.config.lesions, args.out)
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{t} grade {res[t]['grade']}" for t in ("dr", "dme") if t in res)
    )
    return 0
