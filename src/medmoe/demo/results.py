"""The demo's results for one subject, as named values: the rows of every report table and the
computed checks, from the evaluation rows (:mod:`medmoe.demo.evaluate`) by pure functions over
:mod:`medmoe.demo.stats`. :mod:`medmoe.demo.report` turns them into text; nothing here formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmoe.demo.config import DemoConfig
from medmoe.demo.evaluate import WEIGHTINGS
from medmoe.demo.stats import (
    GroupCheck,
    aggregate,
    check_lines,
    crop_scores,
    crop_value,
    paired_bootstrap,
    per_crop,
    routing,
)

SUBJECTS = {"A": "Subject A (MNI152, held-out crops)", "B": "Subject B (CAT12, never trained on)"}
WEIGHTING_NAMES = {"s_top": "s_top", "avg": "avg", "aft": "Aft_weight"}
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
    subject: str  # "A" or "B"
    table1: tuple[Table1Row, ...]
    differences: tuple[DifferenceRow, ...]
    routing: tuple[RoutingRow, ...]
    table2_points: tuple[Table2Row, ...]
    table2_box: tuple[Table2Row, ...]
    confusion: tuple[Confusion, Confusion]  # at click 1 and at the last click
    structures: tuple[StructureRow, ...]
    checks: tuple[str, ...]  # the computed pass/miss lines (medmoe.demo.stats.check_lines)


@dataclass(frozen=True)
class DemoResults:
    """Everything the report shows about the experiment."""

    cfg: DemoConfig
    names: dict[int, str]  # label value -> structure name
    tau: float  # the automatic τ, chosen on Subject A's validation crops
    a: SubjectResults
    b: SubjectResults


def demo_results(
    rows: list[dict], *, cfg: DemoConfig, names: dict[int, str], tau: float
) -> DemoResults:
    """Both subjects' results from the evaluation rows of both."""
    a, b = (subject_results(rows, s, cfg) for s in ("A", "B"))
    return DemoResults(cfg=cfg, names=names, tau=tau, a=a, b=b)


def subject_results(rows: list[dict], subject: str, cfg: DemoConfig) -> SubjectResults:
    """Every table of ``subject`` from the evaluation rows."""
    m = len(cfg.groups)
    return SubjectResults(
        subject=subject,
        table1=tuple(table1_row(rows, subject, model) for model in TABLE1_MODELS),
        differences=differences(rows, subject, cfg),
        routing=routing_rows(rows, subject, m),
        table2_points=table2(rows, subject, cfg, "points"),
        table2_box=table2(rows, subject, cfg, "box"),
        confusion=(confusion(rows, subject, 0, m), confusion(rows, subject, 1, m)),
        structures=structures(rows, subject),
        checks=checks(rows, subject, cfg),
    )


def table1_row(rows: list[dict], subject: str, model: str) -> Table1Row:
    cells = []
    for prompt, first, kind in TABLE1_COLUMNS:
        dice = crop_scores(rows, subject=subject, prompt=prompt, first=first)
        nsd = crop_scores(rows, subject=subject, prompt=prompt, first=first, metric="nsd")
        cells.append(
            Score(aggregate(per_crop(dice, model), kind), aggregate(per_crop(nsd, model), kind))
        )
    return Table1Row(model, tuple(cells))


def table2(rows: list[dict], subject: str, cfg: DemoConfig, prompt: str) -> tuple[Table2Row, ...]:
    """Every weighting at every τ of ``cfg.taus``, the upper bound, and oracle routing."""
    scores = crop_scores(rows, subject=subject, prompt=prompt)
    variants = [(f"{w}|{t}", f"{t}", WEIGHTING_NAMES[w]) for w in WEIGHTINGS for t in cfg.taus]
    variants += [("Upperbound", "—", "Upperbound (own expert)")]
    variants += [(f"oracle|{w}", "oracle", WEIGHTING_NAMES[w]) for w in WEIGHTINGS]
    out = []
    for key, tau, weighting in variants:
        values = per_crop(scores, key)
        groups = tuple(aggregate(values, i + 1) for i in range(len(cfg.groups)))
        other, mean = aggregate(values, "other"), aggregate(values, "finetuned")
        out.append(Table2Row(tau, weighting, other, groups, mean))
    return tuple(out)


def tau_spread(rows: list[dict], subject: str, cfg: DemoConfig, prompt: str) -> dict[str, float]:
    """Per weighting: the largest difference between the τ rows (mean over groups and other)."""
    scores = crop_scores(rows, subject=subject, prompt=prompt)
    out = {}
    for w in WEIGHTINGS:
        means = []
        for t in cfg.taus:
            values = per_crop(scores, f"{w}|{t}")
            means.append([aggregate(values, "other"), aggregate(values, "finetuned")])
        arr = np.asarray(means)
        out[WEIGHTING_NAMES[w]] = float((arr.max(0) - arr.min(0)).max())
    return out


def differences(rows: list[dict], subject: str, cfg: DemoConfig) -> tuple[DifferenceRow, ...]:
    """MoE - Baseline with its paired bootstrap interval, for other, finetuned and each group."""
    kinds: list[tuple[str | int, str]] = [
        ("other", "other"),
        ("finetuned", "finetuned (mean of groups)"),
    ]
    kinds += [(i + 1, g.name) for i, g in enumerate(cfg.groups)]
    out = []
    for kind, label in kinds:
        cells = []
        for prompt in ("points", "box"):
            s = crop_scores(rows, subject=subject, prompt=prompt)
            est, lo, hi = paired_bootstrap(
                per_crop(s, "MoE"), per_crop(s, "Baseline"), kind, n=cfg.bootstrap, seed=cfg.seed
            )
            cells.append(Interval(est, lo, hi))
        out.append(DifferenceRow(label, *cells))
    return tuple(out)


def _routing(rows, subject: str, prompt: str, first: str, step: int, groups: int):
    return routing(rows, subject=subject, prompt=prompt, first=first, step=step, groups=groups)


def routing_rows(rows: list[dict], subject: str, groups: int) -> tuple[RoutingRow, ...]:
    out = []
    for prompt, first, label in ROUTING_RUNS:
        r0, r1 = (_routing(rows, subject, prompt, first, s, groups) for s in (0, 1))
        out.append(
            RoutingRow(
                label, (r0.fires_on_other, r1.fires_on_other), (r0.missed_right, r1.missed_right)
            )
        )
    return tuple(out)


def confusion(rows: list[dict], subject: str, step: int, groups: int) -> Confusion:
    r = _routing(rows, subject, "points", "centre", step, groups)
    return tuple(tuple(int(v) for v in line) for line in r.confusion)


def checks(rows: list[dict], subject: str, cfg: DemoConfig) -> tuple[str, ...]:
    out = []
    for prompt in ("points", "box"):
        s = crop_scores(rows, subject=subject, prompt=prompt)
        base, ft, moe = (per_crop(s, m) for m in TABLE1_MODELS)
        _, lo, hi = paired_bootstrap(moe, base, "other", n=cfg.bootstrap, seed=cfg.seed)
        groups = []
        for i, g in enumerate(cfg.groups, start=1):
            _, glo, ghi = paired_bootstrap(moe, base, i, n=cfg.bootstrap, seed=cfg.seed)
            groups.append(
                GroupCheck(
                    g.name, aggregate(base, i), aggregate(ft, i), aggregate(moe, i), (glo, ghi)
                )
            )
        out += check_lines(
            label=f"{subject}, {prompt}",
            baseline=aggregate(base, "other"),
            ft=aggregate(ft, "other"),
            moe=aggregate(moe, "other"),
            ci_other=(lo, hi),
            groups=groups,
            tau_spread=tau_spread(rows, subject, cfg, prompt),
        )
    return tuple(out)


def structure_crops(rows: list[dict], subject: str) -> dict[str, list[int]]:
    """Structure name -> the indices of its evaluation crops, in evaluation order."""
    names: dict[str, list[int]] = {}
    for r in rows:
        key = (r["subject"], r["method"], r["prompt"], r["first"])
        if key == (subject, "Baseline", "points", "centre"):
            names.setdefault(r["name"], []).append(r["crop"])
    return names


def structures(rows: list[dict], subject: str) -> tuple[StructureRow, ...]:
    """Mean Dice per structure (points, centre first click), in evaluation order."""
    s = crop_scores(rows, subject=subject, prompt="points")
    out = []
    for name, crops in structure_crops(rows, subject).items():
        vals = [float(np.mean([crop_value(s[c], m) for c in crops])) for m in TABLE1_MODELS]
        out.append(StructureRow(name, s[crops[0]]["task"], *vals))
    return tuple(out)
