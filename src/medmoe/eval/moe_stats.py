"""Table 1 / Table 2 statistics of a MoE evaluation, as pure functions over typed rows: per-crop
scores, the table cells, paired bootstrap confidence intervals, routing statistics and the
pass/miss checks. Rows are :class:`EvalRow`, one per (crop, method, prompt, first click), as
:mod:`medmoe.eval.moe_methods` writes them.

Aggregation: "other" is the mean over the other structures' crops; a group's value is the mean
over its crops; "finetuned" (and Table 2's "mean") is the mean of the group values, each group
weighing the same, as the paper averages over categories.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from medmoe.errors import InputError


@dataclass(frozen=True)
class EvalRow:
    """One evaluation: a model (``method``) on one crop with one prompt setting."""

    subject: str  # the set the crop comes from ("A", "B", a dataset's name)
    crop: int  # the crop's index in its subject's evaluation order
    name: str  # the structure's name
    task: int  # 0: an other structure; i: the structure of group (expert) i
    method: str  # "Baseline", "FT:<i>", "MoE", "<weighting>|<tau>", "oracle|<weighting>"
    prompt: str  # "points" or "box"
    first: str  # the first click: "centre" (deepest voxel) or "random"
    dice: float
    gate: tuple[int, int]  # the gate's argmax class at the first and at the last step
    expert: tuple[int, int]  # the expert fused in at the first and the last step (0: none)
    nsd: float | None = None  # Table 1's models only

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``nsd`` left out where there is none; gate and expert as lists)."""
        out: dict[str, Any] = {
            "subject": self.subject,
            "crop": self.crop,
            "name": self.name,
            "task": self.task,
            "method": self.method,
            "prompt": self.prompt,
            "first": self.first,
            "dice": self.dice,
            "gate": list(self.gate),
            "expert": list(self.expert),
        }
        if self.nsd is not None:
            out["nsd"] = self.nsd
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalRow:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown evaluation row keys: {', '.join(sorted(unknown))}")
        return cls(
            subject=str(d["subject"]),
            crop=int(d["crop"]),
            name=str(d["name"]),
            task=int(d["task"]),
            method=str(d["method"]),
            prompt=str(d["prompt"]),
            first=str(d["first"]),
            dice=float(d["dice"]),
            gate=(int(d["gate"][0]), int(d["gate"][1])),
            expert=(int(d["expert"][0]), int(d["expert"][1])),
            nsd=None if d.get("nsd") is None else float(d["nsd"]),
        )


def as_rows(rows: Iterable[EvalRow | Mapping[str, Any]]) -> list[EvalRow]:
    """Rows as :class:`EvalRow`, from rows or from their JSON dicts (a cached evaluation)."""
    return [r if isinstance(r, EvalRow) else EvalRow.from_dict(r) for r in rows]


FORGET_DROP = 0.10  # forgetting exists: FT-expert on other <= Baseline - 0.10
KEEP_RATIO = 0.95  # non-forgetting: MoE on other >= 0.95 x Baseline ...
KEEP_CI = -0.03  # ... and the CI's lower bound of MoE - Baseline >= -0.03
GAIN = 0.5  # adding tasks: recovered gain (MoE - B) / (FT - B) >= 0.5 with a CI above 0 ...
GROUPS_FRACTION = 0.75  # ... on at least 3 of 4 groups
SATURATED = 0.01  # the τ rows differ by less than this: the ablation is inconclusive


def crop_scores(
    rows: list[EvalRow], *, subject: str, prompt: str, first: str = "centre", metric: str = "dice"
) -> dict[int, dict]:
    """``{crop: {"task": t, method: value, ...}}`` for one subject and prompt setting."""
    if metric not in ("dice", "nsd"):
        raise InputError(f"unknown metric {metric!r}; use dice or nsd")
    out: dict[int, dict] = {}
    for r in rows:
        value = getattr(r, metric)
        if (r.subject, r.prompt, r.first) != (subject, prompt, first) or value is None:
            continue
        out.setdefault(r.crop, {"task": r.task})[r.method] = value
    return out


def crop_value(scores: dict, model: str) -> float:
    """One crop's value for a model: ``FT`` is the crop's own expert on a finetuned crop and the
    mean over every expert on an other crop; ``Upperbound`` is the own expert, or the Baseline."""
    task = scores["task"]
    if model == "FT":
        if task:
            return scores[f"FT:{task}"]
        return float(np.mean([v for k, v in scores.items() if k.startswith("FT:")]))
    if model == "Upperbound":
        return scores[f"FT:{task}"] if task else scores["Baseline"]
    return scores[model]


def per_crop(scores: dict[int, dict], model: str) -> dict[int, tuple[int, float]]:
    return {c: (s["task"], crop_value(s, model)) for c, s in scores.items()}


def _by_task(values: dict[int, tuple[int, float]]) -> dict[int, np.ndarray]:
    tasks: dict[int, list[float]] = {}
    for task, v in values.values():
        tasks.setdefault(task, []).append(v)
    return {t: np.asarray(v, dtype=float) for t, v in tasks.items()}


def aggregate(values: dict[int, tuple[int, float]], kind: str | int) -> float:
    """``"other"``, ``"finetuned"`` (mean of group means) or a group index."""
    tasks = _by_task(values)
    if kind == "other":
        return float(tasks[0].mean()) if 0 in tasks else math.nan
    if kind == "finetuned":
        means = [v.mean() for t, v in tasks.items() if t > 0]
        return float(np.mean(means)) if means else math.nan
    return float(tasks[kind].mean()) if kind in tasks else math.nan


def paired_bootstrap(
    a: dict[int, tuple[int, float]],
    b: dict[int, tuple[int, float]],
    kind: str | int,
    *,
    n: int,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(estimate, lo, hi)``: the aggregate of ``a - b`` and its percentile 95 % interval, from
    ``n`` resamples of the crops (with replacement, within each group: stratified)."""
    diff = {c: (t, a[c][1] - b[c][1]) for c, (t, _) in a.items() if c in b}
    tasks = _by_task(diff)
    keep = {"other": [0], "finetuned": [t for t in tasks if t > 0]}.get(kind, [kind])
    tasks = {t: v for t, v in tasks.items() if t in keep}
    if not tasks:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = np.mean(
        [v[rng.integers(0, v.size, (n, v.size))].mean(axis=1) for v in tasks.values()], axis=0
    )
    est = float(np.mean([v.mean() for v in tasks.values()]))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return est, float(lo), float(hi)


class Routing(NamedTuple):
    confusion: np.ndarray  # (m + 1, m + 1): rows the true group, columns the gate's argmax
    fires_on_other: float  # fraction of other crops on which an expert was fused in
    missed_right: float  # fraction of finetuned crops on which their own expert was not used


def routing(
    rows: list[EvalRow], *, subject: str, prompt: str, first: str, step: int, groups: int
) -> Routing:
    """Routing of the trained MoE at the first (``step=0``) or the last (``step=1``) click."""
    sel = [
        r
        for r in rows
        if (r.subject, r.method, r.prompt, r.first) == (subject, "MoE", prompt, first)
    ]
    confusion = np.zeros((groups + 1, groups + 1), dtype=int)
    fired, missed = [], []
    for r in sel:
        confusion[r.task, r.gate[step]] += 1
        if r.task == 0:
            fired.append(r.expert[step] > 0)
        else:
            missed.append(r.expert[step] != r.task)
    mean = lambda x: float(np.mean(x)) if x else math.nan  # noqa: E731
    return Routing(confusion, mean(fired), mean(missed))


class GroupCheck(NamedTuple):
    name: str
    baseline: float
    ft: float
    moe: float
    ci: tuple[float, float]  # of MoE - Baseline


def recovered(g: GroupCheck) -> float:
    """(MoE - Baseline) / (FT - Baseline); NaN when the expert does not beat the Baseline."""
    gap = g.ft - g.baseline
    return (g.moe - g.baseline) / gap if gap > 0 else math.nan


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def check_lines(
    *,
    label: str,
    baseline: float,
    ft: float,
    moe: float,
    ci_other: tuple[float, float],
    groups: list[GroupCheck],
    tau_spread: dict[str, float],
) -> list[str]:
    """The four computed verdicts of the issue, with their thresholds and numbers."""
    lines = [
        f"{label}: forgetting exists: FT-expert on other {ft:.3f} <= Baseline {baseline:.3f} "
        f"- {FORGET_DROP:.2f} = {baseline - FORGET_DROP:.3f}: {_verdict(ft <= baseline - FORGET_DROP)}",
        f"{label}: non-forgetting: MoE on other {moe:.3f} >= {KEEP_RATIO} x Baseline = "
        f"{KEEP_RATIO * baseline:.3f}, and the 95 % CI of MoE - Baseline [{ci_other[0]:+.3f}, "
        f"{ci_other[1]:+.3f}] has its lower bound >= {KEEP_CI:+.2f}: "
        f"{_verdict(moe >= KEEP_RATIO * baseline and ci_other[0] >= KEEP_CI)}",
    ]
    need = math.ceil(GROUPS_FRACTION * len(groups))
    parts, good = [], 0
    for g in groups:
        r = recovered(g)
        ok = r >= GAIN and g.ci[0] > 0  # NaN compares False: no gain to recover is no pass
        good += ok
        parts.append(
            f"{g.name} {r:.2f} [{g.ci[0]:+.3f}, {g.ci[1]:+.3f}] {'ok' if ok else 'no'}"
            if not math.isnan(r)
            else f"{g.name} n/a (FT {g.ft:.3f} <= Baseline {g.baseline:.3f}) no"
        )
    lines.append(
        f"{label}: adding tasks: recovered gain (MoE - Baseline) / (FT - Baseline) >= {GAIN} with "
        f"the 95 % CI of MoE - Baseline above 0 on {good} of {len(groups)} groups (need >= {need}; "
        f"{'; '.join(parts)}): {_verdict(good >= need)}"
    )
    for weighting, spread in tau_spread.items():
        note = (
            "the gate is saturated and the τ ablation is inconclusive"
            if spread < SATURATED
            else "the τ ablation is informative"
        )
        lines.append(
            f"{label}: ablation ({weighting}): the τ rows differ by at most {spread:.3f} "
            f"(threshold {SATURATED}): {note}"
        )
    return lines
