"""Fundus result tables in the report's Table 1 layout, and the multi-task vs single-task check.

Table 1 of the report has, per model, the accuracy of retinopathy grading (RG, medmoe's ``dr``)
and of macular-edema risk (MER, ``dme``) and IoU/Dice for each lesion. medmoe adds the quadratic
kappa of both grades and the AUPR of each lesion as extra columns. A cell is a number, or
``(mean, std)`` over training seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medmoe.multitask.constants import LESIONS
from medmoe.multitask.training.usage import collapsed

Cell = float | tuple[float, float]
TARGET = 0.05  # the multi-task model should be within 5 points of the single-task ones

# the metrics judged against the single-task baselines: the report's Table 1 metrics plus AUPR
JUDGED = ("dr_acc", "dme_acc", *(f"{x}_{m}" for x in LESIONS for m in ("iou", "dice", "aupr")))
JUDGED += ("dr_kappa", "dme_kappa")


def _fmt(v: Cell | None) -> str:
    if v is None:
        return "—"
    if isinstance(v, tuple):
        return f"{v[0]:.3f} ± {v[1]:.3f}"
    return "nan" if v != v else f"{v:.3f}"


def table1(
    results: Mapping[str, Mapping[str, Cell]], *, lesions: Sequence[str] = LESIONS
) -> list[str]:
    """Markdown lines: Model | RG acc | MER acc | <lesion> IoU / Dice ... | RG κ | MER κ |
    <lesion> AUPR ... (the last ones are medmoe's extra columns)."""
    head = ["Model", "RG acc", "MER acc", *(f"{x} IoU / Dice" for x in lesions)]
    head += ["RG κ", "MER κ", *(f"{x} AUPR" for x in lesions)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, r in results.items():
        cells = [_fmt(r.get("dr_acc")), _fmt(r.get("dme_acc"))]
        for x in lesions:
            iou, dice = r.get(f"{x}_iou"), r.get(f"{x}_dice")
            cells.append("—" if iou is None else f"{_fmt(iou)} / {_fmt(dice)}")
        cells += [_fmt(r.get("dr_kappa")), _fmt(r.get("dme_kappa"))]
        cells += [_fmt(r.get(f"{x}_aupr")) for x in lesions]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def mean_std(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Per metric, the mean and the sample standard deviation (ddof 1; 0 for one run)."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], float | int)]
    out = {}
    for k in keys:
        v = np.array([r[k] for r in runs], float)
        out[k] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
    return out


def merge_baselines(results: Mapping[str, Mapping[str, Cell]], moe_name: str) -> dict[str, Cell]:
    """The single-task baselines' metrics, merged into one row (they have disjoint tasks)."""
    return {m: v for n, r in results.items() if n != moe_name for m, v in r.items()}


def comparison(moe: Mapping[str, Cell], base: Mapping[str, Cell]) -> list[str]:
    """One line per judged metric: the gap (on the means), PASS when the multi-task model is at
    most 5 points below, MISS otherwise; with seeds, also whether a std exceeds the gap."""
    lines = []
    for m in JUDGED:
        if m not in moe or m not in base:
            continue
        a, b = moe[m], base[m]
        am, bm = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        if am != am or bm != bm:  # nan: AUPR with no positive pixel
            lines.append(f"{m}: MoE {_fmt(a)} vs single-task {_fmt(b)} (undefined: no positives)")
            continue
        gap = am - bm
        verdict = "PASS" if gap >= -TARGET - 1e-9 else "MISS"
        line = (
            f"{m}: MoE {_fmt(a)} vs single-task {_fmt(b)} ({gap:+.3f}; within 5 points: {verdict}"
        )
        if isinstance(a, tuple):
            noisy = max(a[1], b[1]) > abs(gap)
            line += "; std larger than the gap" if noisy else "; gap larger than both stds"
        lines.append(line + ")")
    return lines


def verdict_counts(lines: Sequence[str]) -> str:
    passed = sum("PASS" in x for x in lines)
    missed = sum("MISS" in x for x in lines)
    return f"{passed} PASS, {missed} MISS of {passed + missed} metrics"


def lesion_table(results: Mapping[str, Mapping], *, lesions: Sequence[str] = LESIONS) -> list[str]:
    """Markdown lines, one row per (model, lesion) of the models with lesions: the threshold
    applied (chosen on validation), pooled Dice at 0.5 and at that threshold, the mean Dice of
    the photographs with that lesion, and AUPR. ``results``: per model, a ``FundusEvaluation``
    as a dict (its ``metrics`` and ``thresholds``)."""
    head = "| Model | Lesion | Threshold (val) | Dice at 0.5 | Dice at threshold | "
    lines = [head + "Mean per-image Dice | AUPR |", "|---" * 7 + "|"]
    for name, ev in results.items():
        m, th = ev["metrics"], ev.get("thresholds", {})
        for x in lesions:
            if f"{x}_dice" not in m:
                continue
            tuned = m.get(f"{x}_dice_tuned", m[f"{x}_dice"])
            cells = [f"{th.get(x, 0.5):.4g}", _fmt(m[f"{x}_dice"]), _fmt(tuned)]
            cells += [_fmt(m.get(f"{x}_dice_per_image")), _fmt(m.get(f"{x}_aupr"))]
            lines.append(f"| {name} | {x} | " + " | ".join(cells) + " |")
    return lines


def confusion_lines(task: str, matrix: Sequence[Sequence[int]]) -> list[str]:
    """A confusion matrix as a markdown table: rows the true grade, columns the predicted one."""
    k = len(matrix)
    lines = [f"| {task} true \\ predicted | " + " | ".join(str(j) for j in range(k)) + " |"]
    lines.append("|---" * (k + 1) + "|")
    lines += [f"| {i} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix)]
    return lines


def usage_lines(
    name: str, training: Mapping[str, Mapping], test: Mapping[str, Sequence]
) -> list[str]:
    """Per task, the share of samples that kept each expert: in the last training epoch and on
    the test split, with a collapse flag (:func:`~medmoe.multitask.training.usage.collapsed`)."""
    lines = []
    for task, share in test.items():
        if len(share) < 2:
            continue
        train = training.get(task, {}).get("share")
        flag = " (collapsed)" if collapsed(share) else ""
        lines.append(
            f"- {name}, {task}: test "
            + "/".join(f"{s:.2f}" for s in share)
            + flag
            + (
                ""
                if train is None
                else "; last training epoch " + "/".join(f"{s:.2f}" for s in train)
            )
        )
    return lines
