"""A MoE evaluation's tables (:class:`~medmoe.eval.moe_tables.SubjectResults`) as markdown and as
JSON: what ``medmoe evaluate --moe BUNDLE --groups GROUPS.json`` writes. The tables read like
the demo report's (same columns, same number formats; NaN is "n/a")."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from medmoe.eval.moe_stats import EvalRow
from medmoe.eval.moe_tables import Confusion, SubjectResults, Table2Row, TableSpec

MODEL_LABELS = {"Baseline": "Baseline", "FT": "FT-expert", "MoE": "MoE"}


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _d(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3f}"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def table1_md(res: SubjectResults) -> str:
    lines = [
        "| Model | Other, points | Finetuned, points | Other, box | Finetuned, box | "
        "Other, points (random 1st) | Finetuned, points (random 1st) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res.table1:
        cells = [f"{_f(c.dice)} / {_f(c.nsd)}" for c in row.cells]
        lines.append(_row([MODEL_LABELS[row.model], *cells]))
    return "\n".join(lines)


def table2_md(rows: Sequence[Table2Row], groups: Sequence[str]) -> str:
    lines = [
        "| τ | weighting | Other | " + " | ".join(groups) + " | Mean (groups) |",
        "|---|---|---|" + "---|" * len(groups) + "---|",
    ]
    for r in rows:
        lines.append(_row([r.tau, r.weighting, *(_f(c) for c in (r.other, *r.groups, r.mean))]))
    return "\n".join(lines)


def ci_md(res: SubjectResults) -> str:
    lines = ["| MoE − Baseline (Dice) | points | box |", "|---|---|---|"]
    for row in res.differences:
        cells = [f"{_d(i.estimate)} [{_d(i.lo)}, {_d(i.hi)}]" for i in (row.points, row.box)]
        lines.append(_row([row.label, *cells]))
    return "\n".join(lines)


def routing_md(res: SubjectResults) -> str:
    lines = [
        "| prompt | expert fires on other, click 1 | ... last click | right expert missed, "
        "click 1 | ... last click |",
        "|---|---|---|---|---|",
    ]
    for row in res.routing:
        lines.append(
            _row([row.label, *(_pct(c) for c in (*row.fires_on_other, *row.missed_right))])
        )
    return "\n".join(lines)


def confusion_md(confusion: Confusion, groups: Sequence[str]) -> str:
    names = ["other", *groups]
    lines = ["| true \\ gate | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for n, counts in zip(names, confusion, strict=True):
        lines.append(_row([n, *(str(v) for v in counts)]))
    return "\n".join(lines)


def structures_md(res: SubjectResults, groups: Sequence[str]) -> str:
    lines = ["| Structure | group | Baseline | FT-expert | MoE |", "|---|---|---|---|---|"]
    for s in res.structures:
        group = groups[s.task - 1] if s.task else "other"
        lines.append(_row([s.name, group, *(_f(v) for v in (s.baseline, s.ft, s.moe))]))
    return "\n".join(lines)


def render_markdown(res: SubjectResults, spec: TableSpec, *, title: str) -> str:
    """Every table of ``res`` with a line on what each is."""
    g = spec.groups
    parts = [
        f"# {title}",
        "",
        f'Groups (gate order): {", ".join(g)}; every other structure is "other". '
        f"Table 2's τ: {', '.join(str(t) for t in spec.taus)}. Intervals: paired percentile "
        f"bootstrap over crops within each group, {spec.bootstrap} resamples, seed {spec.seed}.",
        "",
        "## Table 1: Dice / NSD",
        table1_md(res),
        "",
        "## MoE − Baseline with 95 % intervals",
        ci_md(res),
        "",
        "## Table 2 (points)",
        table2_md(res.table2_points, g),
        "",
        "## Table 2 (box)",
        table2_md(res.table2_box, g),
        "",
        "## Routing of the trained MoE",
        routing_md(res),
        "",
        "## Gate confusion, click 1 (points, centre first click)",
        confusion_md(res.confusion[0], g),
        "",
        "## Gate confusion, last click",
        confusion_md(res.confusion[1], g),
        "",
        "## Per structure (Dice, points, centre first click)",
        structures_md(res, g),
        "",
        "## Checks",
        *(f"- {line}" for line in res.checks),
    ]
    return "\n".join(parts) + "\n"


def _plain(value: Any) -> Any:
    """JSON-ready: tuples to lists, NaN and infinities to None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def results_json(res: SubjectResults, spec: TableSpec, rows: Sequence[EvalRow]) -> str:
    """The tables, the settings and every row, as strict JSON (NaN written as null)."""
    data = {
        "spec": dataclasses.asdict(spec),
        "results": dataclasses.asdict(res),
        "rows": [r.to_dict() for r in rows],
    }
    return json.dumps(_plain(data), indent=1, allow_nan=False) + "\n"
