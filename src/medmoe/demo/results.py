"""The demo's results for both subjects, as named values: the library's tables
(:mod:`medmoe.eval.moe_tables`) over the demo's evaluation rows, with the demo's groups, τ
values and bootstrap settings. :mod:`medmoe.demo.report` turns them into text; nothing here
formats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medmoe.demo.config import DemoConfig
from medmoe.eval.moe_stats import EvalRow, as_rows
from medmoe.eval.moe_tables import (
    ROUTING_RUNS,
    TABLE1_COLUMNS,
    TABLE1_MODELS,
    WEIGHTING_NAMES,
    Confusion,
    DifferenceRow,
    Interval,
    RoutingRow,
    Score,
    StructureRow,
    SubjectResults,
    Table1Row,
    Table2Row,
    TableSpec,
)
from medmoe.eval.moe_tables import subject_results as library_subject_results
from medmoe.eval.subject_overlap import SubjectOverlap

__all__ = [
    "ROUTING_RUNS",
    "SUBJECTS",
    "TABLE1_COLUMNS",
    "TABLE1_MODELS",
    "WEIGHTING_NAMES",
    "Confusion",
    "DemoResults",
    "DifferenceRow",
    "Interval",
    "RoutingRow",
    "Score",
    "StructureRow",
    "SubjectResults",
    "Table1Row",
    "Table2Row",
    "demo_results",
    "subject_results",
    "table_spec",
]

SUBJECTS = {"A": "Subject A (MNI152, held-out crops)", "B": "Subject B (CAT12, never trained on)"}


@dataclass(frozen=True)
class DemoResults:
    """Everything the report shows about the experiment."""

    cfg: DemoConfig
    names: dict[int, str]  # label value -> structure name
    tau: float  # the automatic τ, chosen on Subject A's validation crops
    a: SubjectResults
    b: SubjectResults
    overlap: SubjectOverlap | None = None  # Subject B against Subject A (None: not computed)


def table_spec(cfg: DemoConfig) -> TableSpec:
    """The library's table settings for the demo's configuration."""
    return TableSpec(
        groups=tuple(g.name for g in cfg.groups),
        taus=tuple(cfg.taus),
        bootstrap=cfg.bootstrap,
        seed=cfg.seed,
    )


def demo_results(
    rows: Iterable[EvalRow | Mapping[str, Any]],
    *,
    cfg: DemoConfig,
    names: dict[int, str],
    tau: float,
    overlap: SubjectOverlap | None = None,
) -> DemoResults:
    """Both subjects' results from the evaluation rows of both (rows or their JSON dicts);
    ``overlap``: how far Subject B is from Subject A (:func:`~medmoe.eval.subject_overlap.
    subject_overlap`), reported when given."""
    rows = as_rows(rows)
    a, b = (subject_results(rows, s, cfg) for s in ("A", "B"))
    return DemoResults(cfg=cfg, names=names, tau=tau, a=a, b=b, overlap=overlap)


def subject_results(
    rows: Iterable[EvalRow | Mapping[str, Any]], subject: str, cfg: DemoConfig
) -> SubjectResults:
    """Every table of ``subject`` from the evaluation rows."""
    return library_subject_results(as_rows(rows), subject, table_spec(cfg))
