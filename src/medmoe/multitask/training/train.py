"""Training of the multi-task MoE (and of its single-task baselines) on the shared engine.

Classification and segmentation samples are disjoint (as in IDRiD), so training alternates a
classification batch and a segmentation batch (:class:`AlternatingBatches`, a batch sampler over
the two sets concatenated, :class:`TrainingSet`), and each loss sees only the labels it has.
All experts run (dense routing) for the warm-up fraction of the epochs, then top-p routing with
sparse dispatch. AdamW with lr 3e-5 for the backbone and 3e-4 for the rest, weight decay 1e-4
(the report's values). The loop itself (DDP, DataLoader, autocast, checkpoints, resume) is
:func:`medmoe.train.engine.fit`; this module supplies the step, the batches and the balancer.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from medmoe.errors import InputError
from medmoe.multitask.constants import GRADE_TASKS
from medmoe.multitask.data.augment import Augmenter, augment_config
from medmoe.multitask.data.datasets import FundusData
from medmoe.multitask.data.preprocess import normalize
from medmoe.multitask.model.backbone import load_torchvision_resnet50
from medmoe.multitask.model.heads import HeadOutput
from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE
from medmoe.multitask.model.routing import use_dense
from medmoe.multitask.training.balance import GradBalancer
from medmoe.multitask.training.losses import (
    AuxWeights,
    ClassificationLoss,
    SegmentationLoss,
    gate_aux_loss,
)
from medmoe.multitask.training.usage import UsageMeter
from medmoe.train import distributed as dist_utils
from medmoe.train.engine import LoopConfig, OptimizerSpec, RunOptions, StepContext, Task, fit
from medmoe.train.task import Runtime


@dataclass(frozen=True, kw_only=True)
class FundusTrainConfig:
    epochs: int = 10
    batch_size: int = 4
    lr_backbone: float = 3e-5
    lr_heads: float = 3e-4
    weight_decay: float = 1e-4
    aux: dict = field(default_factory=lambda: asdict(AuxWeights()))
    balance_tasks: bool = True  # equalise the backbone's gradient between cls and seg steps
    # during the dense warm-up, each expert's own output is also supervised (weight; 0 = off)
    expert_loss: float = 1.0
    lr_schedule: str = "constant"  # or "cosine": per optimizer step, from the base rates to 0
    augment: str = "report"  # or "none" (see medmoe.multitask.data.augment)
    seed: int = 0


class TrainingSet(Dataset):
    """The grading set then the segmentation set (either left out when the model has no such
    task), as one dataset whose keys are ``(epoch, index)``: each sample's augmentation is
    seeded by (seed, epoch, index)."""

    def __init__(
        self, *, data: FundusData, augmenter: Augmenter | None, cls: bool = True, seg: bool = True
    ) -> None:
        self.data, self.augmenter = data, augmenter
        self.n_cls = len(data.grading) if cls else 0
        self.n_seg = len(data.segmentation) if seg else 0

    def __len__(self) -> int:
        return self.n_cls + self.n_seg

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if not 0 <= index < len(self):
            raise IndexError(f"training sample {index} of {len(self)}")
        if index < self.n_cls:
            item, masks = self.data.grading[index], None
        else:
            item = self.data.segmentation[index - self.n_cls]
            masks = item["masks"]
        if self.augmenter is not None:
            image, masks = self.augmenter(item["image"], masks, epoch=epoch, index=index)
            item = {**item, "image": image}
        if masks is not None:
            item["masks"] = masks.float()
        return item


class AlternatingBatches:
    """This rank's batches of one epoch: a classification batch, then a segmentation batch, and
    so on; the kind with fewer batches starts over. Each kind is shuffled and shared out between
    the ranks by its own ``DistributedSampler`` (seeded by (seed, epoch)), which pads every rank
    to the same number of batches, so that the ranks step in lockstep on the same kind."""

    def __init__(self, *, n_cls: int, n_seg: int, batch_size: int, seed: int) -> None:
        self.sizes, self.batch_size, self.seed = (n_cls, n_seg), batch_size, seed

    def _kind(self, offset: int, n: int, epoch: int, ctx) -> list[list[tuple[int, int]]]:
        if n == 0:
            return []
        sampler = DistributedSampler(
            range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        idx = [(epoch, offset + int(i)) for i in sampler]
        return [idx[k : k + self.batch_size] for k in range(0, len(idx), self.batch_size)]

    def __call__(self, epoch: int, ctx) -> list[list[tuple[int, int]]]:
        cls_b = self._kind(0, self.sizes[0], epoch, ctx)
        seg_b = self._kind(self.sizes[0], self.sizes[1], epoch, ctx)
        out = []
        for step in range(max(len(cls_b), len(seg_b))):
            out += [kind[step % len(kind)] for kind in (cls_b, seg_b) if kind]
        return out


def batch_kind(batch: dict) -> str:
    return "seg" if "masks" in batch else "cls"


def supervised_loss(
    loss_fn, head: HeadOutput, target: torch.Tensor, *, expert_weight: float
) -> torch.Tensor:
    """The loss of the routed output, plus ``expert_weight`` times the mean loss of each expert's
    own output when the head ran densely (warm-up).

    The report trains the weighted mixture for the warm-up, then top-p keeps (mostly) one
    expert, which has then been trained only as a part of a mixture. Supervising each expert on
    its own as well makes every expert a complete predictor from the start, so the switch to
    sparse routing does not cost accuracy. Segmentation experts' outputs are at 1/4 resolution
    and are upsampled to the target like the mixture's.
    """
    loss = loss_fn(head.output.float(), target)
    if not expert_weight or head.experts is None or head.experts.shape[1] < 2:
        return loss
    outs = head.experts.float()
    per_expert = []
    for e in range(outs.shape[1]):
        y = outs[:, e]
        if y.ndim == 4 and y.shape[-2:] != target.shape[-2:]:
            y = F.interpolate(y, size=target.shape[-2:], mode="bilinear", align_corners=False)
        per_expert.append(loss_fn(y, target))
    return loss + expert_weight * torch.stack(per_expert).mean()


class FundusStep:
    """One homogeneous batch (grades or masks) to its loss, gate auxiliaries included; each
    task's routing goes to ``usage`` (when given)."""

    def __init__(
        self, *, model: MultiTaskMoE, config: FundusTrainConfig, usage: UsageMeter | None = None
    ) -> None:
        self.model, self.config, self.usage = model, config, usage
        self.cls_loss, self.seg_loss = ClassificationLoss(), SegmentationLoss()
        self.aux = AuxWeights(**config.aux)

    def __call__(self, batch: dict, ctx: StepContext) -> Tensor:
        mc = self.model.config
        dense = use_dense(ctx.epoch, self.config.epochs, mc.warmup_fraction)
        images = normalize(
            batch["image"].to(ctx.device, non_blocking=True), mean=mc.mean, std=mc.std
        )
        w = self.config.expert_loss
        if batch_kind(batch) == "seg":
            tasks: tuple[str, ...] = ("seg",)
            out = (ctx.module or self.model)(images, dense=dense, tasks=tasks)  # DDP's, in fit
            target = batch["masks"].to(ctx.device, dtype=torch.float32)
            loss = supervised_loss(self.seg_loss, out["seg"], target, expert_weight=w)
        else:
            tasks = tuple(t for t in GRADE_TASKS if t in self.model.heads)
            out = (ctx.module or self.model)(images, dense=dense, tasks=tasks)  # DDP's, in fit
            loss = sum(
                supervised_loss(self.cls_loss, out[t], batch[t].to(ctx.device), expert_weight=w)
                for t in tasks
            )
        if self.usage is not None:
            for t in tasks:
                self.usage.update(t, out[t].probs, out[t].mask, epoch=ctx.epoch)
        if mc.num_experts > 1:
            loss = loss + sum(gate_aux_loss(out[t].probs, out[t].mask, self.aux) for t in tasks)
        return loss


def build_model(
    model_config: MultiTaskConfig, *, seed: int, init_weights: str | os.PathLike | None
) -> MultiTaskMoE:
    """The model, initialised from ``seed`` (and a local torchvision ResNet-50, when given)."""
    torch.manual_seed(seed)
    model = MultiTaskMoE(config=model_config)
    if init_weights is not None:
        load_torchvision_resnet50(model.backbone, init_weights)
    return model


def train_fundus(
    *,
    model_config: MultiTaskConfig,
    config: FundusTrainConfig,
    data: FundusData,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    init_weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    runtime: Runtime = Runtime(),  # noqa: B008 (frozen)
    keep_checkpoints: int | None = None,
) -> tuple[MultiTaskMoE, list[dict]]:
    """Train on ``data`` (its training split); checkpoints go to ``out_dir/checkpoints`` (the
    latest ``keep_checkpoints`` stay; None: all). ``init_weights``: a local torchvision
    ResNet-50 checkpoint for the backbone (ImageNet); ``runtime``: workers, precision,
    deterministic kernels."""
    model = build_model(model_config, seed=config.seed, init_weights=init_weights)
    backbone = list(model.backbone.parameters())
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids]
    has_cls = any(t in model.heads for t in GRADE_TASKS)
    has_seg = "seg" in model.heads
    kinds = ("cls", "seg") if has_cls and has_seg and config.balance_tasks else ()
    balancer = GradBalancer(params=backbone, kinds=kinds)
    aug = augment_config(config.augment)
    size = tuple(model_config.image_size)
    augmenter = None if aug is None else Augmenter(config=aug, size=size, seed=config.seed)
    dataset = TrainingSet(data=data, augmenter=augmenter, cls=has_cls, seg=has_seg)
    if len(dataset) == 0:
        raise InputError("no training images for the model's tasks")
    batches = AlternatingBatches(
        n_cls=dataset.n_cls, n_seg=dataset.n_seg, batch_size=config.batch_size, seed=config.seed
    )
    usage = UsageMeter()  # per task and epoch, into the history and metrics.jsonl
    task = Task(
        model=model,
        step=FundusStep(model=model, config=config, usage=usage),
        data=dataset,
        optimizer=OptimizerSpec(
            param_groups=[
                {"params": backbone, "lr": config.lr_backbone},
                {"params": rest, "lr": config.lr_heads},
            ],
            weight_decay=config.weight_decay,
        ),
        # flat: the engine lets a resumed run change only ``epochs`` (extending a finished run)
        config={"model": model_config.to_dict(), **asdict(config)},
        find_unused_parameters=True,
        before_optimizer_step=lambda batch: balancer(batch_kind(batch)),
        batches=batches,
        extra_state={"balancer": balancer},
        validate=lambda _model: usage.pop(),
    )
    loop = LoopConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        schedule=config.lr_schedule,
        seed=config.seed,
        **asdict(runtime),
    )
    run = RunOptions(
        run_dir=Path(out_dir) / "checkpoints", resume=resume, progress=progress, desc="fundus",
        keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    history = fit(task, loop=loop, run=run, device=device)
    for h in history:
        h["dense"] = use_dense(h["epoch"], config.epochs, model_config.warmup_fraction)
    ctx = dist_utils.init_distributed(device=device)
    dist_utils.dump_rank_weights(model, out_dir, "model", ctx)
    return model.eval(), history


def plot_curves(history: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([h["epoch"] + 1 for h in history], [h["loss"] for h in history], marker="o")
    for h in history:
        if not h.get("dense", True):
            ax.axvline(h["epoch"] + 0.5, color="gray", ls="--", lw=0.8, label="top-p from here")
            break
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
