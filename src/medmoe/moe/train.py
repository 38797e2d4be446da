"""Expert finetuning (SFT) and gate training for SAM-Med3D-MoE, on the shared training engine.

Both read their crops lazily from a :class:`~medmoe.data.training.CropDataset` (embeddings from
the cache, labels from disk), so the frozen image encoder runs once per crop and memory is
bounded by the batch. What is specific here is the step (:mod:`medmoe.moe.steps`): the
interactive click loss on each crop of a batch, plus the gate's cross-entropy on its logits for
gate training. Under torchrun the gradients of every trainable parameter (the gate, and the
experts with ``update_top1_expert``) are averaged once per optimizer step. The configs are in
:mod:`medmoe.moe.train_config`; the choice of tau after gate training in
:func:`medmoe.moe.validate.validate_moe`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medmoe.data.training import CropDataset, LabelStore, build_crop_dataset
from medmoe.eval.metrics import dice
from medmoe.moe.expert import ExpertInfo, save_expert
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import DEFAULT_TAU
from medmoe.moe.steps import ClickStep, ExpertStep, GateStep
from medmoe.moe.train_config import ExpertTrainConfig, MoETrainConfig
from medmoe.moe.validate import mask_of, moe_click, one_click_dice, validate_moe
from medmoe.moe.warmup import GateWarmupStep, class_weights
from medmoe.sam3d import MaskDecoder3D, Sam3D
from medmoe.train import distributed as dist_utils
from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, Task, fit
from medmoe.train.task import Runtime, click_task, identity_collate


def split(data: CropDataset, fraction: float, seed: int) -> tuple[CropDataset, CropDataset]:
    """A seeded split that keeps every task in both parts when it has >= 2 crops."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    tasks = [r.task for r in data.records]
    for task in sorted(set(tasks)):
        group = [i for i, t in enumerate(tasks) if t == task]
        order = rng.permutation(len(group))
        n_val = int(round(len(group) * fraction)) if len(group) > 1 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return data.subset(sorted(train)), data.subset(sorted(val))


def prepare_crops(
    samples, *, cache, device: torch.device | str = "auto", progress: bool = True
) -> CropDataset:
    """Encode ``samples`` (an iterable of :class:`~medmoe.data.training.Sample`, consumed one
    at a time) into ``cache``, labels beside it; under torchrun the processes share the work.
    ``progress``: a count of the crops made and encoded so far, on the main process."""
    ctx = dist_utils.init_distributed(device=device)
    labels = LabelStore(root=cache.root / "labels")
    shown = tqdm(samples, desc="crops encoded", unit="crop", disable=not (progress and ctx.is_main))
    data = build_crop_dataset(
        shown, cache=cache, labels=labels, rank=ctx.rank, world_size=ctx.world_size
    )
    shown.close()
    dist_utils.barrier(ctx)
    return data


def _run(out_dir: Path, resume: bool, progress: bool, desc: str, keep: int | None) -> RunOptions:
    return RunOptions(
        run_dir=out_dir / "checkpoints", resume=resume, progress=progress, desc=desc,
        keep_checkpoints=keep,
    )  # fmt: skip


def _loop(config, epochs: int, runtime: Runtime) -> LoopConfig:
    return LoopConfig(
        epochs=epochs, batch_size=config.batch_size, seed=config.seed, **asdict(runtime)
    )


def fit_clicks(
    *, model, param_groups, step: ClickStep, data, config, run: RunOptions, device,
    runtime: Runtime, called=None, validate=None,
) -> list[dict]:  # fmt: skip
    """The engine with what expert and gate training share: batches kept as lists of crops,
    gradients all-reduced once per step (the click loop runs a module several times before
    one backward), checkpoints holding ``config``. ``called``: the module the step calls
    (``ctx.module``), when it is not the whole ``model``; ``validate``: the metrics of each
    epoch's end (main process), into the history and ``metrics.jsonl``."""
    task = click_task(
        model=model,
        step=step,
        data=data,
        config=asdict(config),
        param_groups=param_groups,
        weight_decay=config.weight_decay,
        called=called,
        validate=validate,
    )
    return fit(task, loop=_loop(config, config.epochs, runtime), run=run, device=device)


def _frozen(base: Sam3D, device: torch.device) -> Sam3D:
    base = base.to(device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def train_expert(
    *,
    base: Sam3D,
    base_sha256: str,
    data: CropDataset,
    name: str,
    labels: list[str],
    out_dir: str | os.PathLike,
    config: ExpertTrainConfig = ExpertTrainConfig(),  # noqa: B008 (frozen)
    resume: bool = False,
    progress: bool = True,
    device: torch.device | str = "auto",
    keep_checkpoints: int | None = None,
    runtime: Runtime = Runtime(),  # noqa: B008 (frozen)
) -> Path:
    """Finetune a copy of the base's mask decoder on one task; write the expert artifact."""
    ctx = dist_utils.init_distributed(device=device)
    out_dir = Path(out_dir)
    base = _frozen(base, ctx.device)
    decoder = copy.deepcopy(base.mask_decoder).train().requires_grad_(True)
    train, val = split(data, config.val_fraction, config.seed)

    def validate(model: nn.Module) -> dict[str, float]:
        """Mean one-click Dice on the validation split (the expert's ``val_dice``)."""
        dices = one_click_dice(
            lambda emb, pts, lab: base.decode(emb, points=(pts, lab), decoder=model)[0],
            val,
            size=base.config.img_size,
            device=ctx.device,
        )
        return {"val_dice": float(np.mean(dices))}

    history = fit_clicks(
        model=decoder,
        param_groups=[{"params": list(decoder.parameters()), "lr": config.lr}],
        step=ExpertStep(base=base, clicks=config.clicks, box_prob=config.box_prob),
        data=train,
        config=config,
        run=_run(out_dir, resume, progress, f"expert {name}", keep_checkpoints),
        device=ctx.device,
        runtime=runtime,
        validate=validate if len(val) else None,
    )
    if ctx.is_main:
        val_dice = None
        if len(val):  # the last epoch's, unless a run folder from before validation was resumed
            last = history[-1] if history else {}
            val_dice = last["val_dice"] if "val_dice" in last else validate(decoder)["val_dice"]
        info = ExpertInfo(
            name=name,
            labels=list(labels),
            base_sha256=base_sha256,
            model_config=base.config.to_dict(),
            train_config=asdict(config),
            val_dice=val_dice,
        )
        save_expert(out_dir, decoder=decoder, info=info)
    dist_utils.dump_rank_weights(decoder, out_dir, "expert", ctx)
    dist_utils.barrier(ctx)
    return out_dir


def build_moe(
    *, base: Sam3D, experts: dict[str, MaskDecoder3D], config: MoETrainConfig, seed: int
) -> MoESam3D:
    """A MoE with a freshly initialised gate (seeded), the experts trainable only if the
    config updates the top-1 expert."""
    torch.manual_seed(seed)
    gate = Gate(
        config=GateConfig(embed_dim=base.config.prompt_dim, num_experts=len(experts), **config.gate)
    )
    tau = config.tau if config.tau is not None else DEFAULT_TAU  # an explicit 0 stays 0
    moe = MoESam3D(base=base, experts=experts, gate=gate, tau=tau, weighting=config.weighting)
    moe.experts.requires_grad_(config.update_top1_expert)
    return moe


def _moe_param_groups(moe: MoESam3D, config: MoETrainConfig) -> list[dict]:
    groups = [{"params": list(moe.gate.parameters()), "lr": config.lr_gate}]
    if config.update_top1_expert:
        groups.append({"params": list(moe.experts.parameters()), "lr": config.lr_expert})
    return groups


def _warm_up_gate(
    moe: MoESam3D, train: CropDataset, config, weights, run: RunOptions, device, runtime: Runtime
) -> None:
    """``config.warmup_epochs`` of the gate's cross-entropy alone (:mod:`medmoe.moe.warmup`),
    on the shared engine: one gate call per step, so plain DDP under torchrun."""
    params = [{"params": list(moe.gate.parameters()), "lr": config.lr_gate}]
    task = Task(
        model=moe.gate,
        step=GateWarmupStep(moe=moe, box_prob=config.box_prob, weights=weights),
        data=train,
        optimizer=OptimizerSpec(param_groups=params, weight_decay=config.weight_decay),
        config=asdict(config),
        collate=identity_collate,
    )
    fit(task, loop=_loop(config, config.warmup_epochs, runtime), run=run, device=device)


def gate_metrics(moe: MoESam3D, val: CropDataset, *, device: torch.device) -> dict[str, float]:
    """Each gate-training epoch's validation, at the MoE's current tau (tau itself is chosen
    once, after training): mean one-click Dice and routing accuracy on the validation split."""
    size = moe.base.config.img_size
    was_training, dices, good = moe.training, [], 0
    moe.eval()  # the gate's dropout, where it has one
    for item in val:
        out = moe_click(moe, item, tau=moe.tau, device=device)
        dices.append(dice(mask_of(out.low_res_logits, size), item["label"]))
        good += int(out.gate_probs[0].argmax().item() == item["task"])
    moe.train(was_training)
    return {"val_dice": float(np.mean(dices)), "val_routing_accuracy": good / len(val)}


def train_moe(
    *,
    base: Sam3D,
    base_sha256: str,
    experts: dict[str, MaskDecoder3D],
    data: CropDataset,
    out_dir: str | os.PathLike,
    config: MoETrainConfig = MoETrainConfig(),  # noqa: B008 (frozen)
    resume: bool = False,
    progress: bool = True,
    base_checkpoint: str | os.PathLike | None = None,
    expert_dirs: dict[str, Path] | None = None,
    device: torch.device | str = "auto",
    keep_checkpoints: int | None = None,
    runtime: Runtime = Runtime(),  # noqa: B008 (frozen)
) -> tuple[MoESam3D, dict]:
    """Train the gate (and optionally the top-1 expert); pick tau; write the bundle if asked."""
    ctx = dist_utils.init_distributed(device=device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    moe = build_moe(
        base=_frozen(base, ctx.device), experts=experts, config=config, seed=config.seed
    )
    moe.to(ctx.device)
    # what the gate's checkpoints hold: the gate, and the experts only where they train (a
    # frozen expert is already in its own folder; the frozen base is never saved)
    trainable = nn.ModuleDict({"gate": moe.gate})
    if config.update_top1_expert:
        trainable["experts"] = moe.experts
    train, val = split(data, config.val_fraction, config.seed)
    weights = None
    if config.balance_classes:
        weights = class_weights([r.task for r in train.records], len(experts) + 1)
    moe.train()
    if config.warmup_epochs:
        warm = _run(
            out_dir / "warmup", resume, progress, "gate warm-up", 1
        )  # only resume reads them
        _warm_up_gate(moe, train, config, weights, warm, ctx.device, runtime)
    fit_clicks(
        model=trainable,
        param_groups=_moe_param_groups(moe, config),
        step=GateStep(moe=moe, config=config, weights=weights),
        called=moe.gate,
        data=train,
        config=config,
        run=_run(out_dir, resume, progress, "gate", keep_checkpoints),
        device=ctx.device,
        runtime=runtime,
        validate=(lambda _: gate_metrics(moe, val, device=ctx.device)) if len(val) else None,
    )
    dist_utils.dump_rank_weights(trainable, out_dir, "gate", ctx)
    report = validate_moe(moe, val, tau=config.tau, grid=config.tau_grid, device=ctx.device)
    if ctx.is_main and base_checkpoint is not None:
        from medmoe.moe.bundle import save_moe_bundle

        save_moe_bundle(
            out_dir,
            moe=moe,
            base_checkpoint=base_checkpoint,
            base_sha256=base_sha256,
            expert_dirs=expert_dirs or {},
            train_report={**report, "config": asdict(config)},
        )
    dist_utils.barrier(ctx)
    return moe, report
