"""A MoE evaluation's tables for one subject, as named values: Table 1 (Baseline / FT-expert /
MoE), MoE - Baseline with paired bootstrap intervals, routing, Table 2 (τ x weighting, the
upper bound and oracle routing), confusion matrices, per-structure means and the computed
checks, from the rows (:class:`~medmoe.eval.moe_stats.EvalRow`) by pure functions over
:mod:`medmoe.eval.moe_stats`. Nothing here formats (:mod:`medmoe.eval.moe_report` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmoe.errors import InputError
from medmoe.eval.moe_methods import WEIGHTINGS
from medmoe.eval.moe_stats import (
    EvalRow,
    GroupCheck,
    aggregate,
    check_lines,
    crop_scores,
    crop_value,
    paired_bootstrap,
    per_crop,
    routing,
)

WEIGHTING_NAMES = {"s_top": "s_top", "avg": "avg", "logit-softmax": "Aft_weight"}  # paper's names
DEFAULT_TAUS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class TableSpec:
    """What the tables are built over."""

    groups: tuple[str, ...]  # the experts' names (the groups), in gate order
    taus: tuple[float, ...] = DEFAULT_TAUS  # Table 2's rows
    bootstrap: int = 2000  # resamples of the paired per-crop bootstrap
    seed: int = 0  # of the bootstrap

    def __post_init__(self) -> None:
        if not self.groups:
            raise InputError("the tables need at least one group (expert)")
        if self.bootstrap < 1:
            raise InputError(f"bootstrap must be >= 1, got {self.bootstrap}")


TABLE1_MODELS = ("Baseline", "FT", "MoE")
# Table 1's columns: (prompt, first click, crops), in order
TABLE1_COLUMNS = tuple(
    (prompt, first, kind)
    for prompt, first in (("points", "centre"), ("box", "centre"), ("points", "random"))
    for kind in ("other", "finetuned")
)
ROUTING_RUNS = (  # (prompt, first click, label)
    ("points", "centre", "points (centre 1st)"),
    ("points", "random", "points (random 1st)"),
    ("box", "centre", "box"),
)


@dataclass(frozen=True)
class Score:
    """One Table 1 cell: mean Dice and mean NSD (NaN where no crop has the value)."""

    dice: float
    nsd: float


@dataclass(frozen=True)
class Table1Row:
    model: str  # one of TABLE1_MODELS
    cells: tuple[Score, ...]  # in TABLE1_COLUMNS order


@dataclass(frozen=True)
class Table2Row:
    tau: str  # "0.3", ...; "—" for the upper bound; "oracle" for routing by the crop's group
    weighting: str  # the paper's name of the weighting, or "Upperbound (own expert)"
    other: float
    groups: tuple[float, ...]  # in gate order
    mean: float  # of the groups


@dataclass(frozen=True)
class Interval:
    """A paired bootstrap estimate of MoE - Baseline (Dice) and its 95 % interval."""

    estimate: float
    lo: float
    hi: float


@dataclass(frozen=True)
class DifferenceRow:
    label: str  # "other", "finetuned (mean of groups)" or a group's name
    points: Interval
    box: Interval


@dataclass(frozen=True)
class RoutingRow:
    label: str  # one of ROUTING_RUNS' labels
    fires_on_other: tuple[float, float]  # at click 1 and at the last click
    missed_right: tuple[float, float]


@dataclass(frozen=True)
class StructureRow:
    name: str
    task: int  # 0: other, i: group i
    baseline: float  # mean Dice over the structure's crops (points, centre first click)
    ft: float
    moe: float


# (m + 1) x (m + 1) counts of the gate's argmax (columns) per true group (rows), on the trained
# MoE's points runs with the centre first click
Confusion = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class SubjectResults:
    subject: str  # the rows' subject ("A" or "B" in the demo)
    table1: tuple[Table1Row, ...]
    differences: tuple[DifferenceRow, ...]
    routing: tuple[RoutingRow, ...]
    table2_points: tuple[Table2Row, ...]
    table2_box: tuple[Table2Row, ...]
    confusion: tuple[Confusion, Confusion]  # at click 1 and at the last click
    structures: tuple[StructureRow, ...]
    checks: tuple[str, ...]  # the computed pass/miss lines (medmoe.eval.moe_stats.check_lines)


def subject_results(rows: list[EvalRow], subject: str, spec: TableSpec) -> SubjectResults:
    """Every table of ``subject`` from the evaluation rows."""
    m = len(spec.groups)
    return SubjectResults(
        subject=subject,
        table1=tuple(table1_row(rows, subject, model) for model in TABLE1_MODELS),
        differences=differences(rows, subject, spec),
        routing=routing_rows(rows, subject, m),
        table2_points=table2(rows, subject, spec, "points"),
        table2_box=table2(rows, subject, spec, "box"),
        confusion=(confusion(rows, subject, 0, m), confusion(rows, subject, 1, m)),
        structures=structures(rows, subject),
        checks=checks(rows, subject, spec),
    )


def table1_row(rows: list[EvalRow], subject: str, model: str) -> Table1Row:
    cells = []
    for prompt, first, kind in TABLE1_COLUMNS:
        dice = crop_scores(rows, subject=subject, prompt=prompt, first=first)
        nsd = crop_scores(rows, subject=subject, prompt=prompt, first=first, metric="nsd")
        cells.append(
            Score(aggregate(per_crop(dice, model), kind), aggregate(per_crop(nsd, model), kind))
        )
    return Table1Row(model, tuple(cells))


def table2(
    rows: list[EvalRow], subject: str, spec: TableSpec, prompt: str
) -> tuple[Table2Row, ...]:
    """Every weighting at every τ of ``spec.taus``, the upper bound, and oracle routing."""
    scores = crop_scores(rows, subject=subject, prompt=prompt)
    variants = [(f"{w}|{t}", f"{t}", WEIGHTING_NAMES[w]) for w in WEIGHTINGS for t in spec.taus]
    variants += [("Upperbound", "—", "Upperbound (own expert)")]
    variants += [(f"oracle|{w}", "oracle", WEIGHTING_NAMES[w]) for w in WEIGHTINGS]
    out = []
    for key, tau, weighting in variants:
        values = per_crop(scores, key)
        groups = tuple(aggregate(values, i + 1) for i in range(len(spec.groups)))
        other, mean = aggregate(values, "other"), aggregate(values, "finetuned")
        out.append(Table2Row(tau, weighting, other, groups, mean))
    return tuple(out)


def tau_spread(rows: list[EvalRow], subject: str, spec: TableSpec, prompt: str) -> dict[str, float]:
    """Per weighting: the largest difference between the τ rows (mean over groups and other)."""
    scores = crop_scores(rows, subject=subject, prompt=prompt)
    out = {}
    for w in WEIGHTINGS:
        means = []
        for t in spec.taus:
            values = per_crop(scores, f"{w}|{t}")
            means.append([aggregate(values, "other"), aggregate(values, "finetuned")])
        arr = np.asarray(means)
        out[WEIGHTING_NAMES[w]] = float((arr.max(0) - arr.min(0)).max())
    return out


def differences(rows: list[EvalRow], subject: str, spec: TableSpec) -> tuple[DifferenceRow, ...]:
    """MoE - Baseline with its paired bootstrap interval, for other, finetuned and each group."""
    kinds: list[tuple[str | int, str]] = [
        ("other", "other"),
        ("finetuned", "finetuned (mean of groups)"),
    ]
    kinds += [(i + 1, g) for i, g in enumerate(spec.groups)]
    out = []
    for kind, label in kinds:
        cells = []
        for prompt in ("points", "box"):
            s = crop_scores(rows, subject=subject, prompt=prompt)
            est, lo, hi = paired_bootstrap(
                per_crop(s, "MoE"), per_crop(s, "Baseline"), kind, n=spec.bootstrap, seed=spec.seed
            )
            cells.append(Interval(est, lo, hi))
        out.append(DifferenceRow(label, *cells))
    return tuple(out)


def _routing(rows, subject: str, prompt: str, first: str, step: int, groups: int):
    return routing(rows, subject=subject, prompt=prompt, first=first, step=step, groups=groups)


def routing_rows(rows: list[EvalRow], subject: str, groups: int) -> tuple[RoutingRow, ...]:
    out = []
    for prompt, first, label in ROUTING_RUNS:
        r0, r1 = (_routing(rows, subject, prompt, first, s, groups) for s in (0, 1))
        out.append(
            RoutingRow(
                label, (r0.fires_on_other, r1.fires_on_other), (r0.missed_right, r1.missed_right)
            )
        )
    return tuple(out)


def confusion(rows: list[EvalRow], subject: str, step: int, groups: int) -> Confusion:
    r = _routing(rows, subject, "points", "centre", step, groups)
    return tuple(tuple(int(v) for v in line) for line in r.confusion)


def checks(rows: list[EvalRow], subject: str, spec: TableSpec) -> tuple[str, ...]:
    out = []
    for prompt in ("points", "box"):
        s = crop_scores(rows, subject=subject, prompt=prompt)
        base, ft, moe = (per_crop(s, m) for m in TABLE1_MODELS)
        _, lo, hi = paired_bootstrap(moe, base, "other", n=spec.bootstrap, seed=spec.seed)
        groups = []
        for i, g in enumerate(spec.groups, start=1):
            _, glo, ghi = paired_bootstrap(moe, base, i, n=spec.bootstrap, seed=spec.seed)
            groups.append(
                GroupCheck(g, aggregate(base, i), aggregate(ft, i), aggregate(moe, i), (glo, ghi))
            )
        out += check_lines(
            label=f"{subject}, {prompt}",
            baseline=aggregate(base, "other"),
            ft=aggregate(ft, "other"),
            moe=aggregate(moe, "other"),
            ci_other=(lo, hi),
            groups=groups,
            tau_spread=tau_spread(rows, subject, spec, prompt),
        )
    return tuple(out)


def structure_crops(rows: list[EvalRow], subject: str) -> dict[str, list[int]]:
    """Structure name -> the indices of its evaluation crops, in evaluation order."""
    names: dict[str, list[int]] = {}
    for r in rows:
        if (r.subject, r.method, r.prompt, r.first) == (subject, "Baseline", "points", "centre"):
            names.setdefault(r.name, []).append(r.crop)
    return names


def structures(rows: list[EvalRow], subject: str) -> tuple[StructureRow, ...]:
    """Mean Dice per structure (points, centre first click), in evaluation order."""
    s = crop_scores(rows, subject=subject, prompt="points")
    out = []
    for name, crops in structure_crops(rows, subject).items():
        vals = [float(np.mean([crop_value(s[c], m) for c in crops])) for m in TABLE1_MODELS]
        out.append(StructureRow(name, s[crops[0]]["task"], *vals))
    return tuple(out)
