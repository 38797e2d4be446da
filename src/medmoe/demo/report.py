"""The demo report: Table 1 and Table 2 analogues, routing, confidence intervals and the computed
pass/miss lines, for each subject; the deviations from the paper; the stage timings.

The numbers are :class:`~medmoe.demo.results.DemoResults`; this module only writes them out. The
fixed prose (the introduction, the deviations) is package data beside this module
(``intro.md``, ``deviations.md``), filled with the config's values. The part of the report that
docs/demo.md shows lies between the markers of :mod:`medmoe.demo.readme_block`.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from medmoe.demo.config import DemoConfig
from medmoe.demo.readme_block import README_END, README_START
from medmoe.demo.results import (
    SUBJECTS,
    Confusion,
    DemoResults,
    SubjectResults,
    Table2Row,
)

MODEL_LABELS = {"Baseline": "Baseline", "FT": "FT-expert", "MoE": "MoE"}


@dataclass(frozen=True)
class RunRecord:
    """What the run measured about itself, for the report's header and appendix."""

    training: dict  # the validation numbers the choices were made on
    timings: dict[str, float]  # stage -> wall clock, s
    cpu: dict[str, float]  # stage -> CPU time of the process, s (NaN: not recorded)
    loads: dict[str, float]  # stage -> 1-minute load average at its end
    machine: str  # CPUs and threads, in words
    config_text: str  # the resolved config, as JSON


def prose(name: str) -> str:
    """A prose file shipped beside this module, without its final newline."""
    return files("medmoe.demo").joinpath(name).read_text(encoding="utf-8").removesuffix("\n")


def deviations(cfg: DemoConfig) -> list[str]:
    """The deviations from the paper, as report lines."""
    text = prose("deviations.md").format(
        gate_lr=cfg.gate_lr,
        expert_lr=cfg.expert_lr,
        steps=cfg.pretrain_steps,
        crops=cfg.train_crops,
    )
    return [text, *gate_schedule(cfg)]


def gate_schedule(cfg: DemoConfig) -> list[str]:
    """The deviation bullet for the gate's warm-up and class weights, when the config has them."""
    parts = []
    if cfg.gate_warmup_epochs:
        parts.append(
            f"before the click loop the gate trains for {cfg.gate_warmup_epochs} epochs on its "
            "cross-entropy alone, on each crop's first prompt (a random click inside the "
            "structure, or its box), with no decoder run"
        )
    if cfg.gate_balance:
        parts.append(
            "the gate's cross-entropy is weighted by inverse group frequency (the other "
            "structures outnumber each group several times over)"
        )
    if not parts:
        return []
    text = "; ".join(parts)
    bullet = (
        f"- **Gate schedule.** {text[0].upper()}{text[1:]}. The paper trains the gate with "
        "the click loop alone and plain cross-entropy. Chosen on Subject A's validation crops "
        "(`benchmarks/demo_gate_warmup.py`, results in `benchmarks/results/`)."
    )
    return [textwrap.fill(bullet, width=96, subsequent_indent="  ", break_on_hyphens=False)]


def _total(d: dict[str, float]) -> float:
    """Sum of the known values (a stage measured before CPU time was recorded is NaN)."""
    return float(sum(v for v in d.values() if not math.isnan(v)))


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _d(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3f}"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def table1(res: SubjectResults) -> str:
    lines = [
        "| Model | Other, points | Finetuned, points | Other, box | Finetuned, box | "
        "Other, points (random 1st) | Finetuned, points (random 1st) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res.table1:
        cells = [f"{_f(c.dice)} / {_f(c.nsd)}" for c in row.cells]
        lines.append(_row([MODEL_LABELS[row.model], *cells]))
    return "\n".join(lines)


def table2(rows: tuple[Table2Row, ...], cfg: DemoConfig) -> str:
    names = [g.name for g in cfg.groups]
    lines = [
        "| τ | weighting | Other | " + " | ".join(names) + " | Mean (groups) |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for r in rows:
        lines.append(_row([r.tau, r.weighting, *(_f(c) for c in (r.other, *r.groups, r.mean))]))
    return "\n".join(lines)


def ci_table(res: SubjectResults) -> str:
    lines = [
        "| MoE − Baseline (Dice) | points | box |",
        "|---|---|---|",
    ]
    for row in res.differences:
        cells = [f"{_d(i.estimate)} [{_d(i.lo)}, {_d(i.hi)}]" for i in (row.points, row.box)]
        lines.append(_row([row.label, *cells]))
    return "\n".join(lines)


def routing_table(res: SubjectResults) -> str:
    lines = [
        "| prompt | expert fires on other, click 1 | ... last click | right expert missed, "
        "click 1 | ... last click |",
        "|---|---|---|---|---|",
    ]
    for row in res.routing:
        cells = [*row.fires_on_other, *row.missed_right]
        lines.append(_row([row.label, *(f"{c:.0%}" for c in cells)]))
    return "\n".join(lines)


def confusion_table(confusion: Confusion, cfg: DemoConfig) -> str:
    names = ["other"] + [g.name for g in cfg.groups]
    lines = [
        "| true \\ gate | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for n, counts in zip(names, confusion, strict=True):
        lines.append(_row([n, *(str(v) for v in counts)]))
    return "\n".join(lines)


def structure_table(res: SubjectResults) -> str:
    lines = ["| Structure | group | Baseline | FT-expert | MoE |", "|---|---|---|---|---|"]
    for s in res.structures:
        lines.append(
            _row([s.name, f"{s.task or 'other'}", *(f"{v:.3f}" for v in (s.baseline, s.ft, s.moe))])
        )
    return "\n".join(lines)


def groups_table(cfg: DemoConfig, names: dict[int, str]) -> str:
    lines = [
        "| gate index | group | kind | structures | beside |",
        "|---|---|---|---|---|",
        f"| 0 | other (pretraining) | — | {', '.join(names.get(v, str(v)) for v in cfg.other)} | — |",
    ]
    for i, g in enumerate(cfg.groups, start=1):
        kind = (
            f"weak ({cfg.weak_pretrain_crops} pretraining crop per structure)"
            if g.kind == "weak"
            else "new (never in pretraining)"
        )
        structures = ", ".join(names.get(v, str(v)) for v in g.values)
        lines.append(f"| {i} | {g.name} | {kind} | {structures} | {g.neighbour or '—'} |")
    return "\n".join(lines)


def _section(title: str, table: str) -> list[str]:
    return [f"### {title}", "", table, ""]


def subject_summary(res: SubjectResults, cfg: DemoConfig, *, full: bool) -> list[str]:
    """The tables of one subject; ``full`` adds the box Table 2, the confusion matrices and the
    per-structure Dice (docs/demo.md shows the short form)."""
    title = SUBJECTS[res.subject]
    text = [
        *_section(f"{title}: Table 1 analogue (Dice / NSD at {cfg.nsd_mm:g} mm)", table1(res)),
        *_section(
            f"{title}: MoE − Baseline with paired bootstrap 95 % CIs ({cfg.bootstrap} resamples)",
            ci_table(res),
        ),
        *_section(f"{title}: routing (trained MoE, automatic τ)", routing_table(res)),
        *_section(f"{title}: Table 2 analogue, points (Dice)", table2(res.table2_points, cfg)),
    ]
    if full:
        text += [
            *_section(f"{title}: Table 2 analogue, box (Dice)", table2(res.table2_box, cfg)),
            *_section(
                f"{title}: gate confusion (points, centre first click), click 1",
                confusion_table(res.confusion[0], cfg),
            ),
            *_section(
                f"{title}: gate confusion, last click ({cfg.eval_clicks})",
                confusion_table(res.confusion[1], cfg),
            ),
            *_section(
                f"{title}: Dice per structure (points, centre first click)", structure_table(res)
            ),
        ]
    return text


def readme_summary(results: DemoResults, run: RunRecord) -> list[str]:
    """The lines between the demo page's markers: τ, the run's cost, Subject B's checks and short
    tables, Subject A's Table 1, the deviations."""
    cfg, loads = results.cfg, run.loads
    return [
        f"Automatic τ (Subject A validation): **{results.tau:.2f}**. Total wall time "
        f"{sum(run.timings.values()):.0f} s, CPU time {_total(run.cpu):.0f} s ({run.machine}; "
        f"1-minute load average {min(loads.values(), default=math.nan):.1f} to "
        f"{max(loads.values(), default=math.nan):.1f} at the stage ends, see the report's stage "
        "timings).",
        "",
        "#### Computed checks (Subject B)",
        "",
        *[f"- {line}" for line in results.b.checks],
        "",
        *subject_summary(results.b, cfg, full=False),
        *_section(
            f"{SUBJECTS['A']}: Table 1 analogue (Dice / NSD at {cfg.nsd_mm:g} mm)",
            table1(results.a),
        ),
        "#### Deviations from the paper",
        "",
        *deviations(cfg),
    ]


def render_report(results: DemoResults, run: RunRecord, figures: list[Path]) -> str:
    """The whole report (markdown); ``figures`` are linked by file name."""
    cfg = results.cfg
    text = [
        prose("intro.md").format(jitter_mm=cfg.jitter_mm, eval_clicks=cfg.eval_clicks),
        "",
        groups_table(cfg, results.names),
        "",
        README_START,
        *readme_summary(results, run),
        README_END,
        "",
        "## Subject B, complete",
        "",
        *subject_summary(results.b, cfg, full=True),
        "## Subject A (held-out crops), complete",
        "",
        *subject_summary(results.a, cfg, full=True),
        "#### The same checks on Subject A (for information)",
        "",
        *[f"- {line}" for line in results.a.checks],
        "",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
        *appendix(run),
    ]
    return "\n".join(text)


def write_report(path: Path, *, results: DemoResults, run: RunRecord, figures: list[Path]) -> Path:
    """Write :func:`render_report`'s text to ``path`` atomically."""
    from medmoe.utils.files import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(render_report(results, run, figures))
    return path


def appendix(run: RunRecord) -> list[str]:
    """The validation numbers the choices were made on, the stage timings and the config."""
    total = sum(run.timings.values())
    cpu, loads = run.cpu, run.loads
    return [
        "## Training (Subject A validation crops)",
        "",
        "```",
        json_text(run.training),
        "```",
        "",
        "## Stage timings",
        "",
        "| stage | wall clock, s | CPU time of the process, s | 1-min load average at its end |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v:.1f} | {cpu.get(k, math.nan):.1f} | {loads.get(k, math.nan):.1f} |"
            for k, v in run.timings.items()
        ],
        f"| total | {total:.1f} | {_total(cpu):.1f} | |",
        "",
        "## Configuration",
        "",
        "```",
        run.config_text,
        "```",
        "",
    ]


def json_text(d: dict) -> str:
    return json.dumps(d, indent=1, sort_keys=True, default=float)
