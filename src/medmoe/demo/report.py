"""The demo report: Table 1 and Table 2 analogues, routing, confidence intervals and the computed
pass/miss lines, for each subject; how far Subject B is from Subject A; the deviations from the
paper; the stage timings.

The numbers are :class:`~medmoe.demo.results.DemoResults`; this module only writes them out,
with the tables of ``medmoe evaluate`` (:mod:`medmoe.eval.moe_report`; only the per-structure
table is the demo's own, its group column being the gate index). The
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
from medmoe.demo.results import SUBJECTS, DemoResults, SubjectResults
from medmoe.eval.moe_report import ci_md, confusion_md, routing_md, table1_md, table2_md
from medmoe.eval.subject_overlap import SubjectOverlap, overlap_summary, overlap_table


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


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _names(cfg: DemoConfig) -> list[str]:
    return [g.name for g in cfg.groups]


def structure_table(res: SubjectResults) -> str:
    """Dice per structure; the group column is the gate index (``medmoe evaluate``'s
    :func:`~medmoe.eval.moe_report.structures_md` names the group instead)."""
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
        *_section(f"{title}: Table 1 analogue (Dice / NSD at {cfg.nsd_mm:g} mm)", table1_md(res)),
        *_section(
            f"{title}: MoE − Baseline with paired bootstrap 95 % CIs ({cfg.bootstrap} resamples)",
            ci_md(res),
        ),
        *_section(f"{title}: routing (trained MoE, automatic τ)", routing_md(res)),
        *_section(
            f"{title}: Table 2 analogue, points (Dice)", table2_md(res.table2_points, _names(cfg))
        ),
    ]
    if full:
        text += [
            *_section(
                f"{title}: Table 2 analogue, box (Dice)", table2_md(res.table2_box, _names(cfg))
            ),
            *_section(
                f"{title}: gate confusion (points, centre first click), click 1",
                confusion_md(res.confusion[0], _names(cfg)),
            ),
            *_section(
                f"{title}: gate confusion, last click ({cfg.eval_clicks})",
                confusion_md(res.confusion[1], _names(cfg)),
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
            table1_md(results.a),
        ),
        "#### Deviations from the paper",
        "",
        *deviations(cfg),
    ]


def held_out(overlap: SubjectOverlap | None) -> list[str]:
    """How far Subject B is from Subject A (nothing for results without the overlap)."""
    if overlap is None:
        return []
    return [
        "## How far Subject B is held out",
        "",
        "Subject B is another template brain, not a scan of a second person: "
        + overlap_summary(overlap)
        + " Resampled nearest neighbour by affine, each structure matched by its label value "
        "(`medmoe.eval.subject_overlap`; `benchmarks/subject_overlap.py` prints the same).",
        "",
        overlap_table(overlap),
        "",
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
        *held_out(results.overlap),
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
