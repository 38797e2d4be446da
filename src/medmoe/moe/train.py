"""Expert finetuning (SFT) and gate training for SAM-Med3D-MoE.

Both train from the embedding cache, so the frozen image encoder runs once per crop. Both run
unchanged under ``torchrun`` (DDP: gloo on CPU, NCCL on CUDA; each rank takes every
``world_size``-th sample), use bf16 autocast on CUDA, write an atomic checkpoint every epoch and
resume from the last one. Shuffling and click simulation draw from generators seeded by
``(seed, epoch, step)``, so a resumed run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medmoe.errors import InputError
from medmoe.moe.cache import EmbeddingCache
from medmoe.moe.data import Sample
from medmoe.moe.expert import ExpertInfo, save_expert
from medmoe.moe.gate import Gate, GateConfig
from medmoe.moe.model import MoESam3D
from medmoe.moe.selector import DEFAULT_TAU
from medmoe.sam3d import MaskDecoder3D, Sam3D
from medmoe.train import distributed as dist_utils
from medmoe.train.amp import autocast
from medmoe.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    save_training_state,
)
from medmoe.train.interactive import dice_ce_loss, interactive_loss

TAU_GRID = tuple(round(0.05 * i, 2) for i in range(20))


@dataclass(frozen=True)
class ExpertTrainConfig:
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    clicks: int = 3  # click iterations per step, each adding to the loss
    box_prob: float = 0.5  # fraction of steps prompted by a box (the model must be box-capable)
    val_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class MoETrainConfig:
    epochs: int = 10
    lr_gate: float = 1e-6  # the paper's values
    lr_expert: float = 1e-4
    weight_decay: float = 1e-4
    update_top1_expert: bool = (
        False  # the paper updates the top-1 expert; medmoe defaults to frozen
    )
    ce_weight: float = 1.0
    clicks: int = 1
    box_prob: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    tau: float | None = None  # None: choose automatically on the validation split
    tau_grid: tuple[float, ...] = TAU_GRID
    weighting: str = "s_top"
    gate: dict = field(default_factory=dict)  # GateConfig overrides (num_heads, mlp_dim, ...)


def split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A seeded split that keeps every task in both parts when it has >= 2 samples."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for task in sorted({s.task for s in samples}):
        group = [s for s in samples if s.task == task]
        order = rng.permutation(len(group))
        n_val = int(round(len(group) * fraction)) if len(group) > 1 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return train, val


def _rank_order(n: int, *, seed: int, epoch: int, ctx) -> list[int]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    usable = (n // ctx.world_size) * ctx.world_size  # equal step counts on every rank
    if usable == 0:
        raise InputError(f"{n} training samples cannot be split over {ctx.world_size} processes")
    return [int(i) for i in order[:usable][ctx.rank :: ctx.world_size]]


def _resume(run_dir: Path, model, optimizer, resume: bool) -> int:
    last = latest_checkpoint(run_dir) if resume else None
    if last is None:
        return 0
    return load_training_state(last, model=model, optimizer=optimizer).epoch + 1


def _decode_fn(base: Sam3D, emb, image_pe, decoder):
    def decode(pts, lab, box, mask_input):
        points = (pts, lab) if pts is not None else None
        return base.decode(
            emb, points=points, boxes=box, mask_input=mask_input, image_pe=image_pe, decoder=decoder
        )[0]

    return decode


@torch.no_grad()
def _eval_dice(predict_low, samples: list[Sample], size: int) -> list[float]:
    """Dice of a 1-click (deepest point of the label) prediction on each sample."""
    from medmoe.eval.clicks import first_click
    from medmoe.eval.metrics import dice

    out = []
    for s in samples:
        c = first_click(s.label, method="center")
        pts = torch.as_tensor(c.point, dtype=torch.float32)[None, None]
        lab = torch.ones(1, 1, dtype=torch.long)
        low = predict_low(s, pts, lab)
        up = torch.nn.functional.interpolate(low.float(), size=(size,) * 3, mode="trilinear")
        out.append(dice(up[0, 0].numpy() > 0, s.label))
    return out


def train_expert(
    *,
    base: Sam3D,
    base_sha256: str,
    samples: list[Sample],
    name: str,
    labels: list[str],
    out_dir: str | os.PathLike,
    cache: EmbeddingCache,
    config: ExpertTrainConfig = ExpertTrainConfig(),
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Finetune a copy of the base's mask decoder on one task; write the expert artifact."""
    ctx = dist_utils.init_distributed()
    out_dir = Path(out_dir)
    run_dir = out_dir / "checkpoints"
    base = base.to(ctx.device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    decoder = copy.deepcopy(base.mask_decoder).train()
    for p in decoder.parameters():
        p.requires_grad_(True)
    train, val = split(samples, config.val_fraction, config.seed)
    optimizer = torch.optim.AdamW(
        decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    start = _resume(run_dir, decoder, optimizer, resume)
    wrapped = dist_utils.wrap_model(decoder, ctx)
    loss_fn = dice_ce_loss()
    image_pe = base.prompt_encoder.get_dense_pe()
    size = base.config.img_size
    box_prob = config.box_prob if base.prompt_encoder.supports_boxes else 0.0
    for epoch in range(start, config.epochs):
        order = _rank_order(len(train), seed=config.seed, epoch=epoch, ctx=ctx)
        losses = []
        for step, i in enumerate(
            tqdm(
                order,
                desc=f"expert {name} epoch {epoch + 1}/{config.epochs}",
                disable=not (progress and ctx.is_main),
                leave=False,
            )
        ):
            s = train[i]
            emb = cache.get(s.key, s.image).to(ctx.device)
            rng = np.random.default_rng([config.seed, epoch, step, ctx.rank])
            optimizer.zero_grad(set_to_none=True)
            with autocast(ctx.device):
                loss, _ = interactive_loss(
                    _decode_fn(base, emb, image_pe, wrapped),
                    s.label,
                    size=size,
                    n_iter=config.clicks,
                    rng=rng,
                    box_prob=box_prob,
                    loss_fn=loss_fn,
                    device=ctx.device,
                    backward_each=True,
                )
            optimizer.step()
            losses.append(loss)
        if ctx.is_main:
            save_training_state(
                checkpoint_path(run_dir, epoch),
                model=decoder,
                optimizer=optimizer,
                epoch=epoch,
                step=len(order),
                config=asdict(config),
                extra={"loss": float(np.mean(losses))},
            )
        dist_utils.barrier(ctx)
    decoder.eval()
    val_dice = None
    if val and ctx.is_main:
        dices = _eval_dice(
            lambda s, pts, lab: base.decode(
                cache.get(s.key, s.image).to(ctx.device),
                points=(pts, lab),
                image_pe=image_pe,
                decoder=decoder,
            )[0],
            val,
            size,
        )
        val_dice = float(np.mean(dices))
    if ctx.is_main:
        info = ExpertInfo(
            name=name,
            labels=list(labels),
            base_sha256=base_sha256,
            model_config=base.config.to_dict(),
            train_config=asdict(config),
            val_dice=val_dice,
        )
        save_expert(out_dir, decoder=decoder, info=info)
    dist_utils.barrier(ctx)
    return out_dir


def _moe_output(moe: MoESam3D, emb, image_pe, s: Sample, tau: float, gate=None):
    from medmoe.eval.clicks import first_click

    c = first_click(s.label, method="center")
    pts = torch.as_tensor(c.point, dtype=torch.float32)[None, None]
    return moe.decode(
        emb, points=(pts, torch.ones(1, 1, dtype=torch.long)), image_pe=image_pe, tau=tau, gate=gate
    )


@torch.no_grad()
def choose_tau(
    moe: MoESam3D, samples: list[Sample], cache: EmbeddingCache, grid
) -> tuple[float, dict]:
    """The tau of ``grid`` that maximises the mean over {original tasks, new tasks} of mean Dice,
    measured with one click on the validation samples. Returns ``(tau, {tau: score})``."""
    from medmoe.eval.metrics import dice

    image_pe = moe.base.prompt_encoder.get_dense_pe()
    size = moe.base.config.img_size
    cached = []
    for s in samples:
        out = _moe_output(moe, cache.get(s.key, s.image), image_pe, s, tau=-1.0)  # expert always on
        gen = torch.nn.functional.interpolate(
            out.general_low_res_logits.float(), size=(size,) * 3, mode="trilinear"
        )
        mix = torch.nn.functional.interpolate(
            out.low_res_logits.float(), size=(size,) * 3, mode="trilinear"
        )
        cached.append(
            (
                s,
                float(out.routing.s_top[0]),
                dice(gen[0, 0].numpy() > 0, s.label),
                dice(mix[0, 0].numpy() > 0, s.label),
            )
        )
    scores = {}
    for tau in grid:
        groups: dict[bool, list[float]] = {False: [], True: []}
        for s, s_top, d_gen, d_mix in cached:
            groups[s.task > 0].append(d_mix if s_top > tau else d_gen)
        means = [float(np.mean(v)) for v in groups.values() if v]
        scores[float(tau)] = float(np.mean(means)) if means else 0.0
    # ties (within 1e-3 Dice, i.e. noise on a small validation split) go to the tau closest to
    # the paper's default 0.5, not to an extreme of a plateau
    top = max(scores.values())
    best = min(
        (t for t, v in scores.items() if v >= top - 1e-3), key=lambda t: (abs(t - DEFAULT_TAU), t)
    )
    return best, scores


def train_moe(
    *,
    base: Sam3D,
    base_sha256: str,
    experts: dict[str, MaskDecoder3D],
    samples: list[Sample],
    out_dir: str | os.PathLike,
    cache: EmbeddingCache,
    config: MoETrainConfig = MoETrainConfig(),
    resume: bool = False,
    progress: bool = True,
    base_checkpoint: str | os.PathLike | None = None,
    expert_dirs: dict[str, Path] | None = None,
) -> tuple[MoESam3D, dict]:
    """Train the gate (and optionally the top-1 expert); pick tau; write the bundle if asked."""
    ctx = dist_utils.init_distributed()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = out_dir / "checkpoints"
    torch.manual_seed(config.seed)
    gate = Gate(
        config=GateConfig(embed_dim=base.config.prompt_dim, num_experts=len(experts), **config.gate)
    )
    moe = MoESam3D(
        base=base,
        experts=experts,
        gate=gate,
        tau=config.tau or DEFAULT_TAU,
        weighting=config.weighting,
    ).to(ctx.device)
    for p in moe.experts.parameters():
        p.requires_grad_(config.update_top1_expert)
    groups = [{"params": list(gate.parameters()), "lr": config.lr_gate}]
    if config.update_top1_expert:
        groups.append({"params": list(moe.experts.parameters()), "lr": config.lr_expert})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    train, val = split(samples, config.val_fraction, config.seed)
    trainable = torch.nn.ModuleDict({"gate": gate, "experts": moe.experts})
    start = _resume(run_dir, trainable, optimizer, resume)
    wrapped_gate = dist_utils.wrap_model(gate, ctx)
    loss_fn = dice_ce_loss()
    image_pe = base.prompt_encoder.get_dense_pe()
    size = base.config.img_size
    box_prob = config.box_prob if base.prompt_encoder.supports_boxes else 0.0
    tau_train = config.tau if config.tau is not None else DEFAULT_TAU
    for epoch in range(start, config.epochs):
        order = _rank_order(len(train), seed=config.seed, epoch=epoch, ctx=ctx)
        losses = []
        moe.train()
        for step, i in enumerate(
            tqdm(
                order,
                desc=f"gate epoch {epoch + 1}/{config.epochs}",
                disable=not (progress and ctx.is_main),
                leave=False,
            )
        ):
            s = train[i]
            emb = cache.get(s.key, s.image).to(ctx.device)
            rng = np.random.default_rng([config.seed, epoch, step, ctx.rank])
            target = torch.tensor([s.task], device=ctx.device)
            optimizer.zero_grad(set_to_none=True)

            def decode(pts, lab, box, mask_input, emb=emb, target=target):
                points = (pts, lab) if pts is not None else None
                out = moe.decode(
                    emb,
                    points=points,
                    boxes=box,
                    mask_input=mask_input,
                    image_pe=image_pe,
                    tau=tau_train,
                    gate=wrapped_gate,
                )
                ce = torch.nn.functional.nll_loss(torch.log(out.gate_probs + 1e-8), target)
                return out.low_res_logits, config.ce_weight * ce

            with autocast(ctx.device):
                loss, _ = interactive_loss(
                    decode,
                    s.label,
                    size=size,
                    n_iter=config.clicks,
                    rng=rng,
                    box_prob=box_prob,
                    loss_fn=loss_fn,
                    device=ctx.device,
                    backward_each=True,
                )
            if ctx.distributed and config.update_top1_expert:
                for p in moe.experts.parameters():  # only the top-1 expert has a gradient
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist_utils.all_reduce_mean(p.grad, ctx)
            optimizer.step()
            losses.append(loss)
        if ctx.is_main:
            save_training_state(
                checkpoint_path(run_dir, epoch),
                model=trainable,
                optimizer=optimizer,
                epoch=epoch,
                step=len(order),
                config=_jsonable(asdict(config)),
                extra={"loss": float(np.mean(losses))},
            )
        dist_utils.dump_rank_weights(gate, out_dir, "gate", ctx)
        dist_utils.barrier(ctx)
    moe.eval()
    report: dict = {}
    if config.tau is None and val:
        tau, scores = choose_tau(moe, val, cache, config.tau_grid)
        moe.tau = tau
        report["tau_scores"] = scores
    report["tau"] = moe.tau
    if val:
        report["routing_accuracy"] = routing_accuracy(moe, val, cache)
    if ctx.is_main and base_checkpoint is not None:
        from medmoe.moe.bundle import save_moe_bundle

        save_moe_bundle(
            out_dir,
            moe=moe,
            base_checkpoint=base_checkpoint,
            base_sha256=base_sha256,
            expert_dirs=expert_dirs or {},
            train_report={**report, "config": _jsonable(asdict(config))},
        )
    dist_utils.barrier(ctx)
    return moe, report


@torch.no_grad()
def routing_accuracy(moe: MoESam3D, samples: list[Sample], cache: EmbeddingCache) -> float:
    """Fraction of samples whose gate class (argmax over the m + 1 outputs: 0 = no specific
    expert, i = expert i) is their task."""
    image_pe = moe.base.prompt_encoder.get_dense_pe()
    good = 0
    for s in samples:
        out = _moe_output(moe, cache.get(s.key, s.image), image_pe, s, tau=moe.tau)
        good += int(int(out.gate_probs[0].argmax()) == s.task)
    return good / max(len(samples), 1)


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
