"""Which datastore labels a job trains on, and which it holds back for the guard (pure logic).

A label's structure names come from ``label_info``, the list of ``{"name", "idx"}`` that 3D
Slicer's Submit label sends in its params (MONAI Label's convention; the datastore keeps the
params beside the label): the structure ``name`` is the voxels of value ``idx``. Each name is
given the gate class it trains: the new expert's, an existing expert's (a name among that
expert's labels), or 0, "other" (a structure no expert is for, which must stay with the
general model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from medmoe.continual.config import CaseSpec, TrainRequest
from medmoe.errors import InputError

OTHER = 0  # the gate class "no specific expert"


def label_values(info: Mapping) -> dict[str, int]:
    """``{name: voxel value}`` from a stored label's params: Slicer's ``label_info`` list, or
    a ``label_names`` dict ``{name: value}``; malformed entries and value 0 are skipped, and a
    repeated name keeps its first value."""
    found: dict[str, int] = {}
    items = info.get("label_info")
    pairs = []
    if isinstance(items, list):
        pairs = [(e.get("name"), e.get("idx")) for e in items if isinstance(e, dict)]
    elif isinstance(info.get("label_names"), dict):
        pairs = list(info["label_names"].items())
    for name, value in pairs:
        ok = (
            isinstance(name, str)
            and name
            and isinstance(value, int)
            and not isinstance(value, bool)
        )
        if ok and value > 0 and name not in found:
            found[name] = value
    return found


def cases_from_index(
    objects: Mapping[str, dict],
    *,
    tag: str,
    image_path: Callable[[str], str],
    label_path: Callable[[str, str], str],
) -> list[CaseSpec]:
    """One :class:`CaseSpec` per datastore image (MONAI Label's ``objects``, as the datastore
    index holds them), sorted by id; ``label`` is set where the image has a label of ``tag``."""
    cases = []
    for image_id in sorted(objects):
        entry = objects[image_id].get("labels", {}).get(tag)
        if entry is None:
            cases.append(CaseSpec(image_id=image_id, image=image_path(image_id)))
            continue
        values = label_values(entry.get("info", {}))
        cases.append(
            CaseSpec(
                image_id=image_id,
                image=image_path(image_id),
                label=label_path(image_id, tag),
                values=values,
            )
        )
    return cases


def unlabelled(objects: Mapping[str, dict], *, tag: str) -> list[str]:
    """Image ids without a label of ``tag``, sorted (what Next sample chooses from)."""
    return sorted(i for i, obj in objects.items() if tag not in obj.get("labels", {}))


@dataclass(frozen=True)
class Plan:
    """The experts after the job, in gate order, and the scans it trains on and holds back."""

    experts: tuple[str, ...]  # the serving bundle's, the new one last (an update keeps its place)
    new_task: int  # the new expert's gate class
    classes: Mapping[str, int]  # structure name -> gate class, for the names the bundle knows
    train: tuple[CaseSpec, ...]
    held: tuple[CaseSpec, ...]  # for the guard only
    label: str

    def task_of(self, name: str) -> int:
        """The gate class a structure of this name trains: the new one, an old expert's, or
        :data:`OTHER`."""
        if name == self.label:
            return self.new_task
        return self.classes.get(name, OTHER)

    @property
    def old_experts(self) -> tuple[str, ...]:
        """The experts that stay as they are (the one being updated is not one of them)."""
        return tuple(e for i, e in enumerate(self.experts, 1) if i != self.new_task)


def split_ids(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train, held)``: a seeded ``fraction`` of ``ids`` held back, at least 1 when there are
    2 or more, none of a single id. Both parts sorted."""
    if len(ids) < 2:
        return sorted(ids), []
    order = np.random.default_rng(seed).permutation(sorted(ids))
    n_held = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
    held = sorted(str(i) for i in order[:n_held])
    return sorted(str(i) for i in order[n_held:]), held


def plan_job(
    cases: list[CaseSpec],
    request: TrainRequest,
    expert_labels: Mapping[str, list[str]],
    *,
    fraction: float,
    seed: int,
) -> Plan:
    """The plan for adding (or updating) ``request.expert`` to a bundle whose experts are
    ``expert_labels`` (name -> its label names, in gate order). Needs the label on >= 2 scans:
    one to train on and one for the guard. Scans with the label and scans with only other
    labels are split alike; scans without labels train (they give replay crops only)."""
    names = list(expert_labels)
    experts = tuple(names) if request.expert in names else (*names, request.expert)
    new_task = experts.index(request.expert) + 1
    classes: dict[str, int] = {}
    for i, name in enumerate(experts, 1):
        if i == new_task:
            continue
        for label in [name, *expert_labels.get(name, [])]:
            classes.setdefault(label, i)
    classes.pop(request.label, None)
    with_label = [c.image_id for c in cases if request.label in c.values]
    if len(with_label) < 2:
        raise InputError(
            f"label {request.label!r} is on {len(with_label)} scan(s) of the datastore: submit "
            "it on at least 2 (one to train on, one for the non-forgetting guard)"
        )
    others = [c.image_id for c in cases if c.values and request.label not in c.values]
    train_a, held_a = split_ids(with_label, fraction, seed)
    train_b, held_b = split_ids(others, fraction, seed + 1)
    held = set(held_a + held_b)
    return Plan(
        experts=experts,
        new_task=new_task,
        classes=classes,
        train=tuple(c for c in cases if c.image_id not in held),
        held=tuple(c for c in cases if c.image_id in held),
        label=request.label,
    )
