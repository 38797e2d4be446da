"""The demo experiment's configuration: which structures, how many crops, how long to train.

The design follows the paper's "weak categories" experiment (SAM-Med3D-MoE, Table 1 right,
Table 2): a general model pretrained on the *other* structures, and one expert per *group*:

- ``weak`` groups are in the pretraining set with very few crops (the Baseline is weak, not zero);
- ``new`` groups are never seen in pretraining (the downstream-task column);
- a group with a ``neighbour`` touches one of the other structures, so that a crop centred on it
  also holds that structure and the gate has to read the prompt, not the crop's position.

Label values are Neuromorphometrics IDs, the same in both subjects (``medmoe.data.atlas``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from medmoe.errors import InputError

GROUP_KINDS = ("weak", "new")

# brainstem, thalami, caudates, putamina, lateral ventricles, hippocampi
OTHER: tuple[int, ...] = (35, 59, 60, 36, 37, 57, 58, 51, 52, 47, 48)


@dataclass(frozen=True)
class Group:
    """One finetuned category: its structures, its expert (named ``name``) and its role."""

    name: str  # the expert's name
    values: tuple[int, ...]  # Neuromorphometrics label values
    kind: str  # "weak" (few pretraining crops) or "new" (none)
    neighbour: str = ""  # the other structure it touches ("" when none)

    def __post_init__(self) -> None:
        if self.kind not in GROUP_KINDS:
            raise InputError(f"group {self.name!r}: kind must be one of {GROUP_KINDS}")
        if not self.values:
            raise InputError(f"group {self.name!r} has no structures")


GROUPS: tuple[Group, ...] = (
    Group(name="pallidum", values=(55, 56), kind="weak", neighbour="putamen"),
    Group(name="amygdala", values=(31, 32), kind="weak", neighbour="hippocampus"),
    Group(name="gyri", values=(182, 183, 190, 191), kind="new"),  # precentral, superior frontal
    Group(name="cerebellum", values=(38, 39), kind="new", neighbour="brainstem"),
)


@dataclass(frozen=True)
class DemoConfig:
    other: tuple[int, ...] = OTHER  # what the general model is pretrained on
    groups: tuple[Group, ...] = GROUPS  # one expert each, in gate order (gate index 1, 2, ...)
    train_crops: int = 16  # Subject A training crops per structure (20 % become validation)
    weak_pretrain_crops: int = 1  # of those, how many a weak structure adds to pretraining
    eval_crops_a: int = 1  # Subject A held-out crops per structure (augmentation seeds disjoint)
    eval_crops_b: int = 2  # Subject B crops per structure (jitter only; a real second brain)
    jitter_mm: float = 20.0  # crop centres move by up to this much per axis (train and eval)
    pretrain_steps: int = 1600  # chosen on Subject A validation: benchmarks/demo_pretrain_steps.py
    pretrain_lr: float = 1e-3
    pretrain_clicks: int = 3
    expert_epochs: int = 8
    expert_lr: float = 1e-3
    expert_clicks: int = 2
    expert_batch: int = 1  # crops per optimizer step: a group has only ~13 training crops
    gate_epochs: int = 3
    gate_lr: float = 3e-4  # the paper's 1e-6 suits a long GPU run, not minutes on a CPU
    gate_batch: int = 2
    gate_clicks: int = 2  # >= 2: the gate also sees the negative clicks of later steps
    # cross-entropy-only gate epochs on first prompts before the click loop (0: the paper's
    # schedule) and class-balanced cross-entropy; these and gate_lr were chosen on Subject A
    # validation crops by benchmarks/demo_gate_warmup.py
    gate_warmup_epochs: int = 30
    gate_balance: bool = True
    eval_clicks: int = 6  # the paper's 6 points
    taus: tuple[float, ...] = (0.3, 0.5, 0.7)  # Table 2's rows
    box_prob: float = 0.5
    bootstrap: int = 2000  # resamples of the paired per-crop bootstrap
    nsd_mm: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gate_clicks < 2:
            raise InputError("gate_clicks must be >= 2 (the gate must see negative clicks)")
        if self.weak_pretrain_crops >= self.train_crops:
            raise InputError("weak_pretrain_crops must be below train_crops")
        seen: set[int] = set(self.other)
        for g in self.groups:
            if seen & set(g.values):
                raise InputError(
                    f"group {g.name!r} repeats a structure: {sorted(seen & set(g.values))}"
                )
            seen |= set(g.values)

    @property
    def values(self) -> tuple[int, ...]:
        return self.other + tuple(v for g in self.groups for v in g.values)

    def task_of(self, value: int) -> int:
        """0 for an other structure, ``i`` for the ``i``-th group (its gate index)."""
        for i, g in enumerate(self.groups, start=1):
            if value in g.values:
                return i
        return 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, groups -> dicts

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


FULL = DemoConfig()
QUICK = DemoConfig(
    other=(35, 59, 57),
    groups=(
        Group(name="pallidum", values=(55,), kind="weak", neighbour="putamen"),
        Group(name="amygdala", values=(31,), kind="weak", neighbour="hippocampus"),
        Group(name="gyri", values=(182,), kind="new"),
        Group(name="cerebellum", values=(38,), kind="new", neighbour="brainstem"),
    ),
    train_crops=3,
    weak_pretrain_crops=1,
    eval_crops_a=1,
    eval_crops_b=1,
    pretrain_steps=30,
    expert_epochs=1,
    gate_epochs=1,
    gate_warmup_epochs=2,
    eval_clicks=2,
    bootstrap=200,
)
