"""``medmoe moe``: train the gate of a SAM-Med3D-MoE bundle, and manage the bundle's experts."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli import add_task
from medmoe.cli.common import (
    add_checkpoint_arg,
    add_moe_arg,
    add_trainer_args,
    load_base_for_training,
    nonneg_int,
    positive_float,
    runtime_of,
    save_options,
    tau_value,
)
from medmoe.utils.device import add_device_arg

# medmoe.moe.selector's WEIGHTINGS and WEIGHTING_ALIASES, spelled out so that building the
# parser does not import torch (tests/moe/test_selector.py checks that they are equal).
WEIGHTINGS = ("s_top", "avg", "logit-softmax")
WEIGHTING_ALIASES = {"softmax": "logit-softmax"}


def _weighting(text: str) -> str:
    """--weighting's value, an old alias mapped to its canonical name (choices check the rest)."""
    return WEIGHTING_ALIASES.get(text, text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("moe", help="SAM-Med3D-MoE bundles: train the gate, add/remove/list experts")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    t = actions.add_parser("train", help="train the gate and choose tau (runs under torchrun)")
    add_checkpoint_arg(t, help="the general SAM-Med3D checkpoint the experts were trained from")
    t.add_argument(
        "--expert", type=Path, nargs="+", required=True, help="expert folders (expert train)"
    )
    t.add_argument(
        "--dataset",
        type=Path,
        nargs="+",
        required=True,
        help="datasets; a target whose label an expert was trained on is that expert's "
        "task, every other target is an original task",
    )
    add_trainer_args(t, out_help="bundle folder", epochs=10, click_iterations=1)
    t.add_argument("--lr-gate", type=positive_float, default=1e-6, help="paper: 1e-6")
    t.add_argument("--lr-expert", type=positive_float, default=1e-4, help="paper: 1e-4")
    t.add_argument(
        "--update-top1-expert", action="store_true", help="also finetune the top-1 expert"
    )
    t.add_argument(
        "--tau", type=tau_value, help="fixed tau in [0, 1) (default: chosen on a validation split)"
    )
    t.add_argument(
        "--weighting", type=_weighting, choices=WEIGHTINGS, default="s_top",
        help="how the mask selector fuses the top-1 expert's logits with the general "
        "decoder's: s_top (paper Eq. 1), avg, logit-softmax (the paper's Aft_weight: a "
        "voxel-wise softmax over the two logits; 'softmax' is its old name)",
    )  # fmt: skip
    t.add_argument(
        "--warmup-epochs", type=nonneg_int, default=0,
        help="gate cross-entropy epochs on first prompts before the click loop (default 0: paper)",
    )  # fmt: skip
    t.add_argument(
        "--balance-classes", action="store_true",
        help="weigh the gate's cross-entropy by inverse task frequency",
    )  # fmt: skip
    add_device_arg(t)
    t.set_defaults(func=run_train)
    a = actions.add_parser(
        "add-expert", help="copy an expert into a bundle (retrain the gate after)"
    )
    add_moe_arg(a, help="the bundle folder to add to")
    a.add_argument("--expert", type=Path, required=True, help="an expert folder (expert train)")
    a.set_defaults(func=run_add)
    r = actions.add_parser("remove-expert", help="remove an expert and its gate output")
    add_moe_arg(r, help="the bundle folder to remove from")
    r.add_argument("--name", required=True, help="the expert's name (see moe list)")
    r.set_defaults(func=run_remove)
    ls = actions.add_parser("list", help="list a bundle's experts, tau and base")
    add_moe_arg(ls)
    ls.set_defaults(func=run_list)
    add_task.register(actions)


def _load_experts(paths, *, sha: str, base) -> tuple[dict, dict, dict]:
    """Experts by name, their folders, and the task index of each label they were trained on."""
    from medmoe.errors import InputError
    from medmoe.moe import load_expert

    experts, dirs, task_of_label = {}, {}, {}
    for i, d in enumerate(paths, start=1):
        dec, info = load_expert(d, base_sha256=sha, config=base.config)
        if info.name in experts:
            raise InputError(f"two experts are named {info.name!r}")
        experts[info.name], dirs[info.name] = dec, d
        for label in info.labels:
            task_of_label[label] = i
    return experts, dirs, task_of_label


def _crops(datasets, *, task_of_label: dict, crops_per_target: int, seed: int):
    from medmoe.moe import iter_dataset_crops

    for ds in datasets:
        yield from iter_dataset_crops(
            ds,
            task_of=lambda n: task_of_label.get(n, 0),
            crops_per_target=crops_per_target,
            seed=seed,
        )


def run_train(args: argparse.Namespace) -> int:
    from medmoe.errors import InputError
    from medmoe.moe import MoETrainConfig, prepare_crops, train_moe

    cfg = MoETrainConfig(
        epochs=args.epochs,
        lr_gate=args.lr_gate,
        lr_expert=args.lr_expert,
        batch_size=args.batch_size,
        clicks=args.click_iterations,
        update_top1_expert=args.update_top1_expert,
        tau=args.tau,
        weighting=args.weighting,
        seed=args.seed,
        warmup_epochs=args.warmup_epochs,
        balance_classes=args.balance_classes,
    )
    save_options(args)
    base, sha, cache = load_base_for_training(args)
    device = cache.device
    experts, dirs, task_of_label = _load_experts(args.expert, sha=sha, base=base)
    crops = _crops(
        args.dataset,
        task_of_label=task_of_label,
        crops_per_target=args.crops_per_target,
        seed=args.seed,
    )
    data = prepare_crops(crops, cache=cache, device=device)
    if 0 not in {r.task for r in data.records}:
        raise InputError(
            "the datasets hold no original-task targets (labels no expert was trained on)"
        )
    moe, report = train_moe(
        base=base,
        base_sha256=sha,
        experts=experts,
        data=data,
        out_dir=args.out,
        config=cfg,
        resume=args.resume,
        keep_checkpoints=args.keep_checkpoints,
        runtime=runtime_of(args),
        base_checkpoint=args.checkpoint,
        expert_dirs=dirs,
        device=device,
    )
    acc = report.get("routing_accuracy")
    print(
        f"bundle written to {args.out}: experts {moe.expert_names}, tau {moe.tau:.2f}"
        + (f", routing accuracy {acc:.1%} on the validation split" if acc is not None else "")
    )
    return 0


def run_add(args: argparse.Namespace) -> int:
    from medmoe.moe import add_expert

    name = add_expert(args.moe, args.expert)
    print(f"added expert {name!r}; its gate output is inactive until the gate is retrained")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from medmoe.moe import remove_expert

    remove_expert(args.moe, args.name)
    print(f"removed expert {args.name!r}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from medmoe.moe import read_moe_config
    from medmoe.moe.expert import read_expert_info

    cfg = read_moe_config(args.moe)
    print(f"base     {cfg.base_checkpoint} (sha256 {cfg.base_sha256[:12]})")
    print(f"tau      {cfg.tau:.2f}   weighting {cfg.weighting}")
    for i, name in enumerate(cfg.experts, start=1):
        info = read_expert_info(args.moe / "experts" / name)
        dice = f"{info.val_dice:.3f}" if info.val_dice is not None else "n/a"
        print(f"expert {i}: {name}  labels {info.labels}  val Dice {dice}")
    return 0
