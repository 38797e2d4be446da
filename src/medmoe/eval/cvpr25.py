"""The CVPR 2025 "Foundation Models for Interactive 3D Biomedical Image Segmentation" protocol.

Per target (one label value of one case), as the challenge's evaluation script does it:

1. optionally a box first (``prompt="box"``): the ground truth's bounding box, one prediction
   that is scored and reported but is not part of the AUC;
2. then 5 clicks, one per prediction, each from :func:`medmoe.eval.clicks.largest_error_click`
   on the previous prediction *on the scan's own grid* (the deepest voxel of the largest
   26-connected component of ``pred != gt``; positive in the object, negative outside it).
   Without a box the first click comes from an empty prediction: the object's deepest voxel.
   Clicks accumulate, the box stays, and the previous low-resolution logits are fed back;
3. ``DSC_AUC`` and ``NSD_AUC``: the trapezoid rule over the 5 click predictions at unit
   spacing, not normalised (:func:`trapezoid_auc`, range 0 to 4), and the final DSC and NSD;
4. NSD at 2 mm, set to 0 where DSC <= 0.2 (the challenge skips NSD below that Dice);
5. the inference time of the target (crop, encoder, decoders, mapping back; not the click
   simulation or the metrics), summed per case and flagged when it exceeds 90 s per class.

Where medmoe differs from the script: the model sees a 128^3 crop at 1.5 mm (SAM-Med3D's input)
centred on the box, or on the first click when there is no box, rather than the whole scan; a
click that falls outside that crop cannot be given and the step repeats the previous answer
(counted in ``clicks_outside``); the box is the 3-D bounding box, where the challenge gives a
box on the middle slice and the z range; metrics are per target, where the challenge averages
the classes of a case first (:func:`summarize_cvpr25` reports both).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import trapezoid

from medmoe.data.crop import Sam3DCrop
from medmoe.data.datasets import Target
from medmoe.data.volume import Volume
from medmoe.errors import InputError
from medmoe.eval.clicks import box_from_mask, largest_error_click
from medmoe.eval.metrics import dice, nsd
from medmoe.eval.protocol import iter_targets

N_CLICKS = 5
SECONDS_PER_CLASS = 90.0
NSD_MIN_DICE = 0.2
PROMPTS = ("points", "box")


def trapezoid_auc(values: Sequence[float]) -> float:
    """Area under ``values`` placed at x = 1, 2, ..., n (unit spacing) by the trapezoid rule,
    not normalised: ``sum((v[i] + v[i + 1]) / 2)``, between 0 and ``n - 1`` for scores in
    [0, 1]. This is the challenge's ``cumulative_trapezoid(v, np.arange(n))[-1]``."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise InputError(f"an AUC needs at least 2 values in a row, got shape {v.shape}")
    return float(trapezoid(v, dx=1.0))


def gated_nsd(pred, gt, *, spacing, dice_value: float, tolerance_mm: float = 2.0) -> float:
    """NSD at ``tolerance_mm``, or 0 where ``dice_value <= NSD_MIN_DICE`` (the challenge's rule)."""
    if dice_value <= NSD_MIN_DICE:
        return 0.0
    return nsd(pred, gt, spacing=spacing, tolerance_mm=tolerance_mm)


@dataclass(frozen=True)
class Cvpr25Run:
    """What the protocol measured on one target."""

    dsc: tuple[float, ...]  # after click 1..5
    nsd: tuple[float, ...]
    box_dsc: float | None  # the box-only prediction; None without a box
    box_nsd: float | None
    labels: tuple[int, ...]  # the label of each click given (1 foreground, 0 background)
    clicks_outside: int  # clicks that fell outside the model's crop and could not be given
    seconds: float  # inference time (see the module docstring)
    last: Any  # the last prediction object (MoE predictions carry expert_name and s_top)

    @property
    def dsc_auc(self) -> float:
        return trapezoid_auc(self.dsc)

    @property
    def nsd_auc(self) -> float:
        return trapezoid_auc(self.nsd)


def _crop_mask(prediction) -> np.ndarray:
    return prediction.mask[0, 0].detach().cpu().numpy().astype(bool)


def run_cvpr25(
    predictor,
    image: Volume,
    gt: np.ndarray,
    *,
    prompt: str = "box",
    n_clicks: int = N_CLICKS,
    tolerance_mm: float = 2.0,
) -> Cvpr25Run:
    """The protocol on one target: ``gt`` is the object's mask on ``image``'s grid."""
    if prompt not in PROMPTS:
        raise InputError(f"unknown prompt {prompt!r}; use {', '.join(PROMPTS)}")
    gt = np.asarray(gt, dtype=bool)
    if gt.shape != image.array.shape:
        raise InputError(f"mask shape {gt.shape} differs from the image's {image.array.shape}")
    if not gt.any():
        raise InputError("the ground truth is empty: there is nothing to segment")
    spacing = image.spacing
    score = lambda m: _scores(m, gt, spacing, tolerance_mm)  # noqa: E731
    box_src = box_from_mask(gt) if prompt == "box" else None
    current = np.zeros_like(gt)
    # the crop is centred on the box, or on the first click (what an empty prediction yields)
    first = largest_error_click(current, gt) if box_src is None else None
    anchor = box_src if first is None else np.tile(first.point, 2)
    clock = 0.0
    t0 = time.perf_counter()
    crop = Sam3DCrop.around_box(image, anchor)
    predictor.set_image(crop.image)
    box = crop.box_to_crop(box_src) if box_src is not None else None
    low, last = None, None
    box_scores: tuple[float | None, float | None] = (None, None)
    if box is not None:
        last = predictor.predict(box=box)
        low, current = last.low_res_logits, crop.invert(_crop_mask(last))
    clock += time.perf_counter() - t0
    if box is not None:
        box_scores = score(current)
    points: list[np.ndarray] = []
    labels: list[int] = []
    dscs, nsds, outside = [], [], 0
    for _ in range(n_clicks):
        click = largest_error_click(current, gt)
        point = None if click is None else crop.to_crop_coords(click.point[None])[0]
        if point is not None and not crop.contains(point)[0]:
            outside, point = outside + 1, None
        if point is not None:  # else (no error, or out of reach) the last answer stands
            points.append(point)
            labels.append(click.label)
            t0 = time.perf_counter()
            last = predictor.predict(
                points=np.stack(points), labels=np.array(labels), box=box, mask_input=low
            )
            low, current = last.low_res_logits, crop.invert(_crop_mask(last))
            clock += time.perf_counter() - t0
        d, n = score(current)
        dscs.append(d)
        nsds.append(n)
    return Cvpr25Run(
        dsc=tuple(dscs),
        nsd=tuple(nsds),
        box_dsc=box_scores[0],
        box_nsd=box_scores[1],
        labels=tuple(labels),
        clicks_outside=outside,
        seconds=clock,
        last=last,
    )


def _scores(pred, gt, spacing, tolerance_mm) -> tuple[float, float]:
    d = dice(pred, gt)
    return d, gated_nsd(pred, gt, spacing=spacing, dice_value=d, tolerance_mm=tolerance_mm)


def run_row(run: Cvpr25Run) -> dict[str, Any]:
    """The CSV columns of one run (after ``case``, ``label``, ``name``, ``status``)."""
    row: dict[str, Any] = {}
    if run.box_dsc is not None:
        row["dsc_box"], row["nsd_box"] = run.box_dsc, run.box_nsd
    for i, (d, n) in enumerate(zip(run.dsc, run.nsd, strict=True), start=1):
        row[f"dsc@{i}"], row[f"nsd@{i}"] = d, n
    row.update(
        dsc_auc=run.dsc_auc,
        nsd_auc=run.nsd_auc,
        dsc_final=run.dsc[-1],
        nsd_final=run.nsd[-1],
        clicks_fg=sum(run.labels),
        clicks_bg=len(run.labels) - sum(run.labels),
        clicks_outside=run.clicks_outside,
        time_s=run.seconds,
    )
    for key in ("expert_name", "s_top"):
        if hasattr(run.last, key):
            row[key] = getattr(run.last, key)
    return row


def evaluate_cvpr25(
    predictor,
    targets: Iterable[Target],
    *,
    prompt: str = "box",
    tolerance_mm: float = 2.0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per target (``status`` ``ok`` or ``absent``), with the case's time and budget:
    ``case_time_s`` (its targets' inference time summed), ``case_budget_s`` (90 s per class
    present) and ``over_budget``."""
    rows: list[dict[str, Any]] = []
    for row, image, gt in iter_targets(targets, desc=f"cvpr25 ({prompt})", progress=progress):
        if not gt.any():
            rows.append({**row, "status": "absent"})
            continue
        run = run_cvpr25(predictor, image, gt, prompt=prompt, tolerance_mm=tolerance_mm)
        rows.append({**row, "status": "ok", **run_row(run)})
    _add_case_budget(rows)
    return rows


def _add_case_budget(rows: list[dict[str, Any]]) -> None:
    for case in {r["case"] for r in rows}:
        ok = [r for r in rows if r["case"] == case and r["status"] == "ok"]
        total = float(sum(r["time_s"] for r in ok))
        budget = SECONDS_PER_CLASS * len(ok)
        for r in ok:
            r.update(case_time_s=total, case_budget_s=budget, over_budget=total > budget)


METRICS = ("dsc_auc", "nsd_auc", "dsc_final", "nsd_final", "time_s")


def summarize_cvpr25(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per label name the mean of each metric over its targets; then ``all (per case)``: each
    case's mean over its classes, averaged over cases (the challenge's per-image score), with
    ``time_s`` there the mean case total."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = []
    for name in sorted({r["name"] for r in ok}):
        sel = [r for r in ok if r["name"] == name]
        out.append({"name": name, "n": len(sel)} | _means(sel))
    cases = sorted({r["case"] for r in ok})
    if cases:
        per_case = [_means([r for r in ok if r["case"] == c]) for c in cases]
        for entry, case in zip(per_case, cases, strict=True):
            entry["time_s"] = next(r["case_time_s"] for r in ok if r["case"] == case)
        out.append({"name": "all (per case)", "n": len(cases)} | _means(per_case))
    return out


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {m: float(np.mean([r[m] for r in rows])) for m in METRICS}


def format_cvpr25_table(summary: list[dict[str, Any]]) -> str:
    head = ["target", "n", "DSC_AUC", "NSD_AUC", "DSC_final", "NSD_final", "time_s"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for s in summary:
        cells = [s["name"], str(s["n"])] + [f"{s[m]:.3f}" for m in METRICS[:4]]
        lines.append(" | ".join([*cells, f"{s['time_s']:.1f}"]))
    return "\n".join(lines)


def budget_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per case over its time budget, then a count line."""
    cases: dict[str, tuple[float, float]] = {}
    for r in rows:
        if r.get("status") == "ok":
            cases[r["case"]] = (r["case_time_s"], r["case_budget_s"])
    over = [(c, t, b) for c, (t, b) in sorted(cases.items()) if t > b]
    lines = [f"over budget: case {c} took {t:.1f} s for a budget of {b:.0f} s" for c, t, b in over]
    lines.append(
        f"time budget ({SECONDS_PER_CLASS:.0f} s per class) exceeded in {len(over)} of "
        f"{len(cases)} cases"
    )
    return lines
