"""The non-forgetting guard: before a new bundle replaces the serving one, both are measured on
the held-back crops (datastore labels and replay crops of scans the job did not train on), per
gate class and source, and the new one is accepted only if no old task lost more than
``1 - min_ratio`` of its Dice (and, if asked, the new task gained).

:func:`decide` is the pure decision over a table of :class:`GuardRow`; :func:`measure` fills
the table by one-click Dice (:func:`medmoe.moe.validate.moe_click`, the protocol's centre
click) with each model's own tau.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from medmoe.eval.metrics import dice

REPLAY = "replay"  # the ``name`` of a replay crop; labelled crops carry their structure name


@dataclass(frozen=True)
class GuardRow:
    """One line of the before/after table: a gate class and where its crops came from."""

    task: str  # the expert's name, or "other" (the general model's)
    kind: str  # "new" (the task being learnt) or "old"
    source: str  # "labels" (datastore labels) or "replay" (the serving model's own masks)
    n: int  # held-back crops
    before: float  # mean one-click Dice of the serving bundle
    after: float  # of the new bundle

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before > 0 else float("inf")


@dataclass(frozen=True)
class GuardDecision:
    accepted: bool
    reasons: tuple[str, ...]  # why not (empty when accepted)
    rows: tuple[GuardRow, ...]
    min_ratio: float

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "min_ratio": self.min_ratio,
            "rows": [asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        """The before/after table as Markdown."""
        lines = [
            "| task | kind | source | crops | Dice before | Dice after | after/before |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            ratio = f"{r.ratio:.3f}" if r.before > 0 else "-"
            lines.append(
                f"| {r.task} | {r.kind} | {r.source} | {r.n} | {r.before:.3f} | "
                f"{r.after:.3f} | {ratio} |"
            )
        verdict = "accepted" if self.accepted else "refused: " + "; ".join(self.reasons)
        return "\n".join(lines) + f"\n\n{verdict}\n"


def decide(rows: Sequence[GuardRow], *, min_ratio: float, require_new_gain: bool) -> GuardDecision:
    """Accept iff every old row keeps ``after >= min_ratio * before`` and, with
    ``require_new_gain``, every new row has ``after > before``; a table without a new row is
    refused (nothing shows the new expert works)."""
    reasons = []
    for r in rows:
        if r.kind == "old" and r.after < min_ratio * r.before - 1e-9:
            reasons.append(
                f"{r.task} ({r.source}) fell from {r.before:.3f} to {r.after:.3f} Dice, "
                f"below {min_ratio:g} x before"
            )
        if r.kind == "new" and require_new_gain and not r.after > r.before:
            reasons.append(
                f"the new task {r.task} did not improve ({r.before:.3f} -> {r.after:.3f} Dice)"
            )
    if not any(r.kind == "new" for r in rows):
        reasons.append("no held-back crop of the new task to measure it on")
    return GuardDecision(
        accepted=not reasons, reasons=tuple(reasons), rows=tuple(rows), min_ratio=min_ratio
    )


@torch.no_grad()
def crop_dice(moe, items: Iterable[dict], *, device: torch.device) -> list[float]:
    """One-click Dice of ``moe`` (with its own tau) on each crop."""
    from medmoe.moe.validate import mask_of, moe_click

    size = moe.base.config.img_size
    moe.eval()
    return [
        dice(mask_of(moe_click(moe, it, tau=moe.tau, device=device).low_res_logits, size),
             it["label"])
        for it in items
    ]  # fmt: skip


def measure(
    before,
    after,
    data,
    *,
    names: Sequence[str],
    new_task: int,
    device: torch.device,
) -> list[GuardRow]:
    """The table: one row per (gate class, source) of the held-back crops ``data`` (items with
    ``task`` in the new bundle's classes, and ``name``), ``names`` the new bundle's experts in
    gate order. Each model routes every crop by itself."""
    items = list(data)
    d_before = crop_dice(before, items, device=device)
    d_after = crop_dice(after, items, device=device)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, it in enumerate(items):
        source = REPLAY if it["name"] == REPLAY else "labels"
        groups.setdefault((int(it["task"]), source), []).append(i)
    rows = []
    for (task, source), idx in sorted(groups.items()):
        rows.append(
            GuardRow(
                task="other" if task == 0 else names[task - 1],
                kind="new" if task == new_task else "old",
                source=source,
                n=len(idx),
                before=float(np.mean([d_before[i] for i in idx])),
                after=float(np.mean([d_after[i] for i in idx])),
            )
        )
    return rows
