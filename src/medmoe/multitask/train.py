"""Training and evaluation of the multi-task MoE (and of its single-task baselines).

Classification and segmentation samples are disjoint (as in IDRiD), so training alternates a
classification batch and a segmentation batch, and each loss sees only the labels it has. All
experts run (dense routing) for the warm-up fraction of the epochs, then top-p routing with
sparse dispatch. AdamW with lr 3e-5 for the backbone and 3e-4 for the rest, weight decay 1e-4
(the report's values). Runs under torchrun (DDP; gloo on CPU) and resumes from its last
atomic epoch checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medmoe.multitask.balance import GradBalancer
from medmoe.multitask.heads import HeadOutput
from medmoe.multitask.losses import AuxWeights, ClassificationLoss, SegmentationLoss, gate_aux_loss
from medmoe.multitask.metrics import accuracy, aupr, pooled_iou_dice, quadratic_weighted_kappa
from medmoe.multitask.model import MultiTaskConfig, MultiTaskMoE
from medmoe.multitask.routing import use_dense
from medmoe.train import distributed as dist_utils
from medmoe.train.amp import autocast
from medmoe.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    save_training_state,
)
from medmoe.train.schedule import lr_factor


class FundusData(NamedTuple):
    cls_images: np.ndarray  # (N, 3, H, W) float32
    dr: np.ndarray  # (N,)
    dme: np.ndarray  # (N,)
    seg_images: np.ndarray  # (M, 3, H, W)
    masks: np.ndarray  # (M, 5, H, W) bool


def synthetic_data(*, n_cls: int, n_seg: int, size: tuple[int, int], seed: int) -> FundusData:
    from medmoe.multitask.synthetic import synth_fundus

    rng = np.random.default_rng(seed)
    cls = [synth_fundus(rng, size) for _ in range(n_cls)]
    seg = [synth_fundus(rng, size) for _ in range(n_seg)]
    return FundusData(
        np.stack([c[0] for c in cls]) if cls else np.zeros((0, 3, *size), np.float32),
        np.array([c[2] for c in cls], np.int64),
        np.array([c[3] for c in cls], np.int64),
        np.stack([s[0] for s in seg]) if seg else np.zeros((0, 3, *size), np.float32),
        np.stack([s[1] for s in seg]) if seg else np.zeros((0, 5, *size), bool),
    )


def idrid_data(root: str | os.PathLike, *, split: str, size: tuple[int, int]) -> FundusData:
    from medmoe.multitask.idrid import grading_samples, load_masks, load_rgb, segmentation_samples

    grades = grading_samples(root, split)
    segs = segmentation_samples(root, split)
    return FundusData(
        np.stack([load_rgb(g.image, size) for g in grades]),
        np.array([g.dr for g in grades]),
        np.array([g.dme for g in grades]),
        np.stack([load_rgb(s.image, size) for s in segs]),
        np.stack([load_masks(s, size) for s in segs]),
    )


@dataclass(frozen=True)
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
    lr_schedule: str = "constant"  # or "cosine": per step, from the base rates to 0
    seed: int = 0


MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)  # ImageNet statistics
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    return (torch.as_tensor(images, dtype=torch.float32) - MEAN) / STD


def _batches(n: int, bs: int, rng: np.random.Generator, ctx) -> list[np.ndarray]:
    if n == 0:
        return []
    order = rng.permutation(n)
    chunks = [order[i : i + bs] for i in range(0, n, bs)]
    usable = (len(chunks) // ctx.world_size) * ctx.world_size or len(chunks)
    return chunks[:usable][ctx.rank :: ctx.world_size]


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


def train_fundus(
    *,
    model_config: MultiTaskConfig,
    config: FundusTrainConfig,
    data: FundusData,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    init_weights: str | os.PathLike | None = None,
) -> tuple[MultiTaskMoE, list[dict]]:
    """``init_weights``: a local torchvision ResNet-50 checkpoint for the backbone (ImageNet)."""
    ctx = dist_utils.init_distributed()
    out_dir = Path(out_dir)
    torch.manual_seed(config.seed)
    model = MultiTaskMoE(config=model_config)
    if init_weights is not None:
        from medmoe.multitask.backbone import load_torchvision_resnet50

        load_torchvision_resnet50(model.backbone, init_weights)
    backbone = list(model.backbone.parameters())
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW(
        [{"params": backbone, "lr": config.lr_backbone}, {"params": rest, "lr": config.lr_heads}],
        weight_decay=config.weight_decay,
    )
    has_cls = any(t in model.heads for t in ("dr", "dme"))
    has_seg = "seg" in model.heads
    kinds = ("cls", "seg") if has_cls and has_seg and config.balance_tasks else ()
    balancer = GradBalancer(params=backbone, kinds=kinds)
    start, history = 0, []
    last = latest_checkpoint(out_dir / "checkpoints") if resume else None
    if last is not None:
        state = load_training_state(last, model=model, optimizer=opt)
        start, history = state.epoch + 1, list(state.extra.get("history", []))
        balancer.load_state_dict(state.extra.get("balancer", {}))
    wrapped = dist_utils.wrap_model(model, ctx, find_unused_parameters=True)
    cls_loss, seg_loss, aux_w = ClassificationLoss(), SegmentationLoss(), AuxWeights(**config.aux)
    for epoch in range(start, config.epochs):
        dense = use_dense(epoch, config.epochs, model_config.warmup_fraction)
        rng = np.random.default_rng([config.seed, epoch])
        cls_b = _batches(len(data.dr), config.batch_size, rng, ctx) if has_cls else []
        seg_b = _batches(len(data.masks), config.batch_size, rng, ctx) if has_seg else []
        steps = max(len(cls_b), len(seg_b))
        model.train()
        losses = []
        for step in tqdm(
            range(steps),
            desc=f"epoch {epoch + 1}/{config.epochs} ({'dense' if dense else 'top-p'})",
            disable=not (progress and ctx.is_main),
            leave=False,
        ):
            factor = lr_factor((epoch + step / steps) / config.epochs, schedule=config.lr_schedule)
            for group, base in zip(
                opt.param_groups, (config.lr_backbone, config.lr_heads), strict=True
            ):
                group["lr"] = base * factor
            for kind, batches in (("cls", cls_b), ("seg", seg_b)):
                if not batches:
                    continue
                idx = batches[step % len(batches)]
                opt.zero_grad(set_to_none=True)
                with autocast(ctx.device):
                    if kind == "cls":
                        tasks = tuple(t for t in ("dr", "dme") if t in model.heads)
                        out = wrapped(
                            normalize(data.cls_images[idx]).to(ctx.device), dense=dense, tasks=tasks
                        )
                        labels = {"dr": data.dr, "dme": data.dme}
                        loss = sum(
                            supervised_loss(
                                cls_loss,
                                out[t],
                                torch.as_tensor(labels[t][idx]).to(ctx.device),
                                expert_weight=config.expert_loss,
                            )
                            for t in tasks
                        )
                    else:
                        tasks = ("seg",)
                        out = wrapped(
                            normalize(data.seg_images[idx]).to(ctx.device), dense=dense, tasks=tasks
                        )
                        target = torch.as_tensor(data.masks[idx], dtype=torch.float32).to(
                            ctx.device
                        )
                        loss = supervised_loss(
                            seg_loss, out["seg"], target, expert_weight=config.expert_loss
                        )
                    if model_config.num_experts > 1:
                        loss = loss + sum(
                            gate_aux_loss(out[t].probs, out[t].mask, aux_w) for t in tasks
                        )
                loss.backward()
                balancer(kind)  # DDP has all-reduced the gradients: every rank scales alike
                opt.step()
                losses.append(float(loss.detach()))
        dist_utils.broadcast_buffers(model, ctx)
        history.append(
            {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "dense": dense,
            }
        )
        if ctx.is_main:
            save_training_state(
                checkpoint_path(out_dir / "checkpoints", epoch),
                model=model,
                optimizer=opt,
                epoch=epoch,
                step=steps,
                config={"model": model_config.to_dict(), "train": asdict(config)},
                extra={"history": history, "balancer": balancer.state_dict()},
            )
        dist_utils.barrier(ctx)
    dist_utils.dump_rank_weights(model, out_dir, "model", ctx)
    return model.eval(), history


@torch.no_grad()
def evaluate_fundus(
    model: MultiTaskMoE, data: FundusData, *, batch_size: int = 8, dense: bool = False
) -> dict:
    """Grades: accuracy and quadratic-weighted kappa. Lesions: pooled IoU/Dice (threshold 0.5)
    and AUPR. Also the mean number of experts used per task (top-p inference)."""
    model.eval()
    res: dict = {}
    used: dict[str, list[float]] = {}
    for task, classes in (("dr", model.config.dr_classes), ("dme", model.config.dme_classes)):
        if task not in model.heads or len(data.dr) == 0:
            continue
        preds = []
        for i in range(0, len(data.dr), batch_size):
            out = model(normalize(data.cls_images[i : i + batch_size]), dense=dense, tasks=(task,))[
                task
            ]
            preds.append(out.output.argmax(-1).numpy())
            used.setdefault(task, []).extend(out.mask.sum(-1).tolist())
        pred = np.concatenate(preds)
        true = data.dr if task == "dr" else data.dme
        res[f"{task}_acc"] = accuracy(pred, true)
        res[f"{task}_kappa"] = quadratic_weighted_kappa(pred, true, classes)
    if "seg" in model.heads and len(data.masks):
        probs = []
        for i in range(0, len(data.masks), batch_size):
            out = model(
                normalize(data.seg_images[i : i + batch_size]), dense=dense, tasks=("seg",)
            )["seg"]
            probs.append(out.output.sigmoid().numpy())
            used.setdefault("seg", []).extend(out.mask.sum(-1).tolist())
        prob = np.concatenate(probs)
        for c, lesion in enumerate(model.config.lesions):
            iou, dice = pooled_iou_dice(prob[:, c] > 0.5, data.masks[:, c])
            res[f"{lesion}_iou"], res[f"{lesion}_dice"] = iou, dice
            res[f"{lesion}_aupr"] = aupr(prob[:, c], data.masks[:, c])
    res["experts_used"] = {t: float(np.mean(v)) for t, v in used.items()}
    return res


def plot_curves(history: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([h["epoch"] + 1 for h in history], [h["loss"] for h in history], marker="o")
    for h in history:
        if not h["dense"]:
            ax.axvline(h["epoch"] + 0.5, color="gray", ls="--", lw=0.8, label="top-p from here")
            break
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
