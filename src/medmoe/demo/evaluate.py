"""Stage 4/5: evaluate Baseline, FT-expert and MoE (and the MoE ablations) on held-out crops.

The three models share the frozen encoder, so each crop is encoded once and every model decodes
from that embedding. Point prompts follow the interactive protocol (first click from the ground
truth, then error-region clicks fed back with the previous logits); box prompts use the
ground-truth box alone. Dice is computed in the crop frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medmoe.eval.metrics import dice
from medmoe.eval.protocol import run_clicks
from medmoe.moe.data import Sample
from medmoe.moe.predictor import MoEPredictor
from medmoe.sam3d import Sam3DPredictor


def evaluate(
    predictors: dict[str, Any],
    samples: list[Sample],
    *,
    encoder: Sam3DPredictor,
    clicks: int,
    prompts: tuple[str, ...] = ("points", "box"),
    seed: int = 0,
    keep_masks_for: set[int] = frozenset(),
    variants: dict[str, dict] | None = None,
) -> tuple[list[dict], dict]:
    """Rows ``{model, prompt, name, task, dice, used_expert}``; masks of the samples whose index is
    in ``keep_masks_for`` (for the overlay figure). ``variants`` maps extra model names to
    ``{"tau": .., "weighting": ..}`` overrides evaluated on the ``"MoE"`` predictor (points only)."""
    rows, masks = [], {}
    jobs = [(m, p) for m in predictors for p in prompts] + [(v, "points") for v in (variants or {})]
    for idx, s in enumerate(tqdm(samples, desc="evaluate", unit="crop", leave=False)):
        with torch.inference_mode():
            encoder.set_image(s.image)
        for name, prompt in jobs:
            pred = predictors.get(name)
            restore = None
            if pred is None:  # an ablation variant of the MoE
                pred = predictors["MoE"]
                restore = (pred.moe.tau, pred.moe.weighting)
                pred.moe.tau = variants[name]["tau"]
                pred.moe.weighting = variants[name]["weighting"]
            pred.set_embedding(encoder.features)
            rng = np.random.default_rng([seed, idx])
            n = clicks if prompt == "points" else 1
            outs = run_clicks(
                pred,
                s.image,
                s.label,
                n_clicks=n,
                prompt=prompt,
                method="random",
                rng=rng,
                set_image=False,
            )
            final = outs[-1].mask[0, 0].cpu().numpy()
            row = {
                "model": name,
                "prompt": prompt,
                "name": s.name,
                "task": s.task,
                "dice": dice(final, s.label),
            }
            if isinstance(pred, MoEPredictor):
                row["used_expert"] = bool(outs[0].used_expert)
                row["s_top"] = float(outs[0].s_top)
                row["gate_class"] = int(outs[0].gate_probs.argmax())
            rows.append(row)
            if idx in keep_masks_for and restore is None:
                masks[(idx, name, prompt)] = final
            if restore is not None:
                pred.moe.tau, pred.moe.weighting = restore
    return rows, masks


def mean_dice(rows: list[dict], *, model: str, prompt: str, task: int | None = None) -> float:
    sel = [
        r["dice"]
        for r in rows
        if r["model"] == model
        and r["prompt"] == prompt
        and (task is None or (r["task"] > 0) == (task > 0))
    ]
    return float(np.mean(sel)) if sel else float("nan")


def routing_accuracy(rows: list[dict], *, model: str = "MoE", prompt: str = "points") -> float:
    """Fraction of crops whose gate class (argmax: 0 general, i expert i) is their task."""
    sel = [r for r in rows if r["model"] == model and r["prompt"] == prompt and "gate_class" in r]
    return float(np.mean([r["gate_class"] == r["task"] for r in sel])) if sel else float("nan")


def expert_use_rate(
    rows: list[dict], *, task: int, model: str = "MoE", prompt: str = "points"
) -> float:
    """Fraction of crops of a task group (0 original, >0 new) on which the expert was mixed in."""
    sel = [
        r
        for r in rows
        if r["model"] == model
        and r["prompt"] == prompt
        and "used_expert" in r
        and (r["task"] > 0) == (task > 0)
    ]
    return float(np.mean([r["used_expert"] for r in sel])) if sel else float("nan")
