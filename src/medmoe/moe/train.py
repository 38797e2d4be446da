"""Expert finetuning (SFT) and gate training for SAM-Med3D-MoE, on the shared training engine.

Both read their crops lazily from a :class:`~medmoe.data.training.CropDataset` (embeddings from
the cache, labels from disk), so the frozen image encoder runs once per crop and memory is
bounded by the batch. What is specific here is the step: the interactive click loss
(:mod:`medmoe.moe.interactive`) on each crop of a batch, plus the gate's cross-entropy on its
logits for gate training. Under torchrun the gradients of every trainable parameter (the gate,
and the experts with ``update_top1_expert``) are averaged once per optimizer step.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from medmoe.data.training import CropDataset, LabelStore, build_crop_dataset
from medmoe.errors import InputError
from medmoe.moe.expert import ExpertInfo, save_expert
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.interactive import dice_ce_loss, interactive_loss
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import DEFAULT_TAU
from medmoe.moe.validate import choose_tau, one_click_dice, routing_accuracy
from medmoe.moe.warmup import GateWarmupStep, class_weights, weighted_ce
from medmoe.sam3d import MaskDecoder3D, Sam3D
from medmoe.train import distributed as dist_utils
from medmoe.train.engine import LoopConfig, StepContext, fit, identity_collate

TAU_GRID = tuple(round(0.05 * i, 2) for i in range(20))


@dataclass(frozen=True)
class ExpertTrainConfig:
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 4  # crops per optimizer step (per process)
    clicks: int = 3  # click iterations per crop, each adding to the loss
    box_prob: float = 0.5  # fraction of crops prompted by a box (the model must be box-capable)
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class MoETrainConfig:
    epochs: int = 10
    lr_gate: float = 1e-6  # the paper's values
    lr_expert: float = 1e-4
    weight_decay: float = 1e-4
    update_top1_expert: bool = False  # the paper updates the top-1 expert; default: frozen
    ce_weight: float = 1.0
    batch_size: int = 4
    clicks: int = 1
    box_prob: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    tau: float | None = None  # None: choose automatically on the validation split
    tau_grid: tuple[float, ...] = TAU_GRID
    weighting: str = "s_top"
    gate: dict = field(default_factory=dict)  # GateConfig overrides (num_heads, mlp_dim, ...)
    # Epochs of gate cross-entropy on first prompts alone, before the click loop (0: none, the
    # paper's schedule; medmoe.moe.warmup). Same learning rate and batch size.
    warmup_epochs: int = 0
    balance_classes: bool = False  # weigh the gate's cross-entropy by inverse class frequency

    def __post_init__(self) -> None:
        _check_common(self)
        if self.tau is not None and not 0.0 <= self.tau < 1.0:
            raise InputError(f"tau must be in [0, 1), got {self.tau}")
        if self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")


def _check_common(cfg) -> None:
    lrs = [getattr(cfg, n) for n in ("lr", "lr_gate", "lr_expert") if hasattr(cfg, n)]
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.clicks < 1:
        raise InputError("epochs, batch size and clicks must be >= 1")
    if any(not lr > 0 for lr in lrs) or cfg.weight_decay < 0:
        raise InputError(f"learning rates must be > 0 and weight decay >= 0, got {lrs}")
    if not 0.0 <= cfg.box_prob <= 1.0 or not 0.0 <= cfg.val_fraction < 1.0:
        raise InputError("box_prob must be in [0, 1] and val_fraction in [0, 1)")


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


class ClickStep:
    """The interactive loss of every crop of a batch (a list of crop dicts), averaged.

    ``decoder_for(embedding, item, ctx)`` returns the function the click loop calls:
    ``decode(points, labels, box, mask_input) -> logits`` or ``(logits, extra_loss)``.
    """

    wrapped: nn.Module | None = None  # set by the engine (the module under DDP, if any)

    def __init__(self, *, base: Sam3D, clicks: int, box_prob: float) -> None:
        self.base = base
        self.clicks = clicks
        self.box_prob = box_prob if base.prompt_encoder.supports_boxes else 0.0
        self.loss_fn = dice_ce_loss()

    def decoder_for(self, emb: Tensor, item: dict, ctx: StepContext):
        raise NotImplementedError

    def __call__(self, batch: list[dict], ctx: StepContext) -> Tensor:
        losses = []
        for item in batch:
            emb = item["embedding"].to(ctx.device, non_blocking=True).unsqueeze(0)
            loss, _ = interactive_loss(
                self.decoder_for(emb, item, ctx),
                item["label"],
                size=self.base.config.img_size,
                n_iter=self.clicks,
                rng=ctx.rng,
                box_prob=self.box_prob,
                loss_fn=self.loss_fn,
                device=ctx.device,
            )
            losses.append(loss)
        return torch.stack(losses).mean()


class ExpertStep(ClickStep):
    """Finetunes ``self.wrapped`` (a copy of the general mask decoder)."""

    def decoder_for(self, emb, item, ctx):
        pe = self.base.prompt_encoder.get_dense_pe()

        def decode(pts, lab, box, mask_input):
            points = (pts, lab) if pts is not None else None
            return self.base.decode(
                emb, points=points, boxes=box, mask_input=mask_input, image_pe=pe,
                decoder=self.wrapped,
            )[0]  # fmt: skip

        return decode


class GateStep(ClickStep):
    """Trains the gate (and the top-1 expert if it is trainable): the selected mask's
    interactive loss plus ``ce_weight`` times the gate's cross-entropy against the crop's
    task, on the gate's logits."""

    def __init__(
        self, *, moe: MoESam3D, config: MoETrainConfig, weights: Tensor | None = None
    ) -> None:
        super().__init__(base=moe.base, clicks=config.clicks, box_prob=config.box_prob)
        self.moe = moe
        self.ce_weight = config.ce_weight
        self.tau = config.tau if config.tau is not None else DEFAULT_TAU
        self.weights = weights  # per gate class (medmoe.moe.warmup.class_weights), or None

    def decoder_for(self, emb, item, ctx):
        pe = self.base.prompt_encoder.get_dense_pe()
        target = torch.tensor([item["task"]], device=ctx.device)

        def decode(pts, lab, box, mask_input):
            out = self.moe.decode(
                emb, points=(pts, lab) if pts is not None else None, boxes=box,
                mask_input=mask_input, image_pe=pe, tau=self.tau, gate=self.wrapped,
            )  # fmt: skip
            ce = weighted_ce(out.gate_logits, target, self.weights)
            return out.low_res_logits, self.ce_weight * ce

        return decode


def prepare_crops(samples, *, cache, device: torch.device | str = "auto") -> CropDataset:
    """Encode ``samples`` (an iterable of :class:`~medmoe.data.training.Sample`, consumed one
    at a time) into ``cache``, labels beside it; under torchrun the processes share the work."""
    ctx = dist_utils.init_distributed(device=device)
    labels = LabelStore(root=cache.root / "labels")
    data = build_crop_dataset(
        samples, cache=cache, labels=labels, rank=ctx.rank, world_size=ctx.world_size
    )
    dist_utils.barrier(ctx)
    return data


class RunOptions(NamedTuple):
    """Where and how one training run goes."""

    out_dir: Path  # checkpoints in out_dir/checkpoints
    device: torch.device
    resume: bool
    progress: bool
    desc: str  # the progress bar's label
    keep_checkpoints: int | None = None  # the latest N epoch checkpoints stay; None: all


def fit_clicks(
    *, model, param_groups, step: ClickStep, data, config, run: RunOptions, called=None
) -> list[dict]:
    """The engine with what expert and gate training share: batches kept as lists of crops,
    gradients all-reduced once per step (the click loop runs a module several times before
    one backward), checkpoints under ``run.out_dir/checkpoints`` holding ``config``. ``called``:
    the module the step calls (``step.wrapped``), when it is not the whole ``model``."""
    return fit(
        model=model,
        param_groups=param_groups,
        step=step,
        ddp_module=called,
        dataset=data,
        loop=LoopConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed),
        run_dir=run.out_dir / "checkpoints",
        config=asdict(config),
        device=run.device,
        sync="allreduce",
        collate=identity_collate,
        weight_decay=config.weight_decay,
        resume=run.resume,
        progress=run.progress,
        desc=run.desc,
        keep_checkpoints=run.keep_checkpoints,
    )


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
    config: ExpertTrainConfig = ExpertTrainConfig(),
    resume: bool = False,
    progress: bool = True,
    device: torch.device | str = "auto",
    keep_checkpoints: int | None = None,
) -> Path:
    """Finetune a copy of the base's mask decoder on one task; write the expert artifact."""
    ctx = dist_utils.init_distributed(device=device)
    out_dir = Path(out_dir)
    base = _frozen(base, ctx.device)
    decoder = copy.deepcopy(base.mask_decoder).train().requires_grad_(True)
    train, val = split(data, config.val_fraction, config.seed)
    fit_clicks(
        model=decoder,
        param_groups=[{"params": list(decoder.parameters()), "lr": config.lr}],
        step=ExpertStep(base=base, clicks=config.clicks, box_prob=config.box_prob),
        data=train,
        config=config,
        run=RunOptions(out_dir, ctx.device, resume, progress, f"expert {name}", keep_checkpoints),
    )
    if ctx.is_main:
        val_dice = None
        if len(val):
            dices = one_click_dice(
                lambda emb, pts, lab: base.decode(emb, points=(pts, lab), decoder=decoder)[0],
                val,
                size=base.config.img_size,
                device=ctx.device,
            )
            val_dice = float(np.mean(dices))
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


def _validate_moe(moe: MoESam3D, val: CropDataset, config: MoETrainConfig, device) -> dict:
    """Choose tau on the validation crops (unless fixed) and measure routing accuracy."""
    moe.eval()
    report: dict = {}
    if config.tau is None and len(val):
        moe.tau, report["tau_scores"] = choose_tau(moe, val, config.tau_grid, device=device)
    report["tau"] = moe.tau
    if len(val):
        report["routing_accuracy"] = routing_accuracy(moe, val, device=device)
    return report


def _warm_up_gate(moe: MoESam3D, train: CropDataset, config, weights, run: RunOptions) -> None:
    """``config.warmup_epochs`` of the gate's cross-entropy alone (:mod:`medmoe.moe.warmup`),
    on the shared engine: one gate call per step, so plain DDP under torchrun."""
    fit(
        model=moe.gate,
        param_groups=[{"params": list(moe.gate.parameters()), "lr": config.lr_gate}],
        step=GateWarmupStep(moe=moe, box_prob=config.box_prob, weights=weights),
        dataset=train,
        loop=LoopConfig(
            epochs=config.warmup_epochs, batch_size=config.batch_size, seed=config.seed
        ),
        run_dir=run.out_dir / "checkpoints",
        config=asdict(config),
        device=run.device,
        collate=identity_collate,
        weight_decay=config.weight_decay,
        resume=run.resume,
        progress=run.progress,
        desc=run.desc,
        keep_checkpoints=1,  # only resume reads them
    )


def train_moe(
    *,
    base: Sam3D,
    base_sha256: str,
    experts: dict[str, MaskDecoder3D],
    data: CropDataset,
    out_dir: str | os.PathLike,
    config: MoETrainConfig = MoETrainConfig(),
    resume: bool = False,
    progress: bool = True,
    base_checkpoint: str | os.PathLike | None = None,
    expert_dirs: dict[str, Path] | None = None,
    device: torch.device | str = "auto",
    keep_checkpoints: int | None = None,
) -> tuple[MoESam3D, dict]:
    """Train the gate (and optionally the top-1 expert); pick tau; write the bundle if asked."""
    ctx = dist_utils.init_distributed(device=device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    moe = build_moe(
        base=_frozen(base, ctx.device), experts=experts, config=config, seed=config.seed
    )
    moe.to(ctx.device)
    trainable = nn.ModuleDict({"gate": moe.gate, "experts": moe.experts})
    train, val = split(data, config.val_fraction, config.seed)
    weights = None
    if config.balance_classes:
        weights = class_weights([r.task for r in train.records], len(experts) + 1)
    moe.train()
    if config.warmup_epochs:
        _warm_up_gate(moe, train, config, weights, RunOptions(
            out_dir / "warmup", ctx.device, resume, progress, "gate warm-up"
        ))  # fmt: skip
    fit_clicks(
        model=trainable,
        param_groups=_moe_param_groups(moe, config),
        step=GateStep(moe=moe, config=config, weights=weights),
        called=moe.gate,
        data=train,
        config=config,
        run=RunOptions(out_dir, ctx.device, resume, progress, "gate", keep_checkpoints),
    )
    dist_utils.dump_rank_weights(trainable, out_dir, "gate", ctx)
    report = _validate_moe(moe, val, config, ctx.device)
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
