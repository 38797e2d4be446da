"""What one continual-learning job is asked to do (:class:`TrainRequest`, from the client's
``params``), how it does it (:class:`ContinualConfig`, the server's settings), and the job's
whole input as the worker reads it (:class:`JobSpec`, a JSON file). Frozen and checked at
construction; unknown keys are refused."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from medmoe.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # an expert name becomes a folder name
IGNORED_PARAMS = frozenset({"client_id", "model"})  # what MONAI Label's client adds itself
MAX_EPOCHS_LIMIT = 1000


def _known(cls, data: dict, what: str) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{what}: unknown key(s) {unknown}; known: {sorted(names)}")
    return data


@dataclass(frozen=True)
class TrainRequest:
    """``POST /train/medmoe_moe`` params: train expert ``expert`` on the datastore's labels
    named ``label`` (``label_info`` names), ``max_epochs`` epochs each for expert and gate."""

    expert: str
    label: str
    max_epochs: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.expert, str) or not NAME.match(self.expert):
            raise InputError(f"expert {self.expert!r} is refused: 1-64 letters, digits, '_' or '-'")
        if not isinstance(self.label, str) or not 0 < len(self.label.strip()) <= 128:
            raise InputError("label must be the name of a submitted label (1-128 characters)")
        epochs = self.max_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            raise InputError(f"max_epochs must be an integer, got {epochs!r}")
        if not 1 <= epochs <= MAX_EPOCHS_LIMIT:
            raise InputError(f"max_epochs must be in 1..{MAX_EPOCHS_LIMIT}, got {epochs}")

    @classmethod
    def from_params(cls, params: dict | None) -> TrainRequest:
        """From the client's JSON ``params`` (MONAI Label's client adds ``client_id``, which is
        ignored); a missing ``expert`` or ``label`` and any other key are refused."""
        if not isinstance(params, dict):
            raise InputError("the train params must be a JSON object")
        data = {k: v for k, v in params.items() if k not in IGNORED_PARAMS}
        _known(cls, data, "train params")
        missing = [k for k in ("expert", "label") if k not in data]
        if missing:
            raise InputError(f"train params need {' and '.join(missing)}")
        if isinstance(data.get("max_epochs"), str) and data["max_epochs"].isdigit():
            data["max_epochs"] = int(data["max_epochs"])  # Slicer's config fields are text
        return cls(**data)


@dataclass(frozen=True)
class ContinualConfig:
    """How a job trains and guards (the server's settings, not the client's)."""

    min_ratio: float = 0.95  # each old task must keep >= min_ratio x its previous Dice
    require_new_gain: bool = True  # the new task's Dice must beat the serving bundle's
    holdout_fraction: float = 0.25  # labelled scans held back for the guard (>= 1 of >= 2)
    label_tag: str = "final"  # the datastore tag whose labels are trained on (Submit label's)
    crops_per_label: int = 2  # crops per labelled structure (the first centred, then jittered)
    replay_clicks: int = 6  # clicks placed per scan for the replay crops
    replay_min_voxels: int = 64  # a replay mask smaller than this is dropped
    expert_lr: float = 1e-4
    gate_lr: float = 1e-4  # higher than the paper's 1e-6: a few epochs on a few scans
    gate_epochs: int | None = None  # None: the request's max_epochs
    warmup_epochs: int = 2  # gate cross-entropy alone, before the click loop
    batch_size: int = 2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_ratio <= 1.0:
            raise InputError(f"min_ratio must be in [0, 1], got {self.min_ratio}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise InputError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        counts = (self.crops_per_label, self.batch_size)
        if min(counts) < 1 or self.replay_clicks < 0 or self.warmup_epochs < 0:
            raise InputError("crops_per_label and batch_size must be >= 1, the others >= 0")
        if self.gate_epochs is not None and self.gate_epochs < 1:
            raise InputError(f"gate_epochs must be >= 1, got {self.gate_epochs}")

    @classmethod
    def from_dict(cls, data: dict) -> ContinualConfig:
        return cls(**_known(cls, dict(data), "continual config"))


@dataclass(frozen=True)
class CaseSpec:
    """One datastore scan as the worker sees it: files by absolute path (the server resolved
    them from its own index; nothing here came from a client as a path)."""

    image_id: str
    image: str
    label: str | None = None  # the label file of the config's tag, if any
    values: dict[str, int] = field(default_factory=dict)  # label_info: name -> voxel value


@dataclass(frozen=True)
class JobSpec:
    """The whole input of one job, written by the server as ``<job_dir>/spec.json``."""

    job_id: str
    request: TrainRequest
    config: ContinualConfig
    bundle: str  # the serving bundle (the "old" one)
    version_dir: str  # where the new bundle goes (written as ``<version_dir>.part`` first)
    job_dir: str  # log, result table, caches
    cases: tuple[CaseSpec, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        d = json.loads(text)
        return cls(
            job_id=d["job_id"],
            request=TrainRequest(**d["request"]),
            config=ContinualConfig.from_dict(d["config"]),
            bundle=d["bundle"],
            version_dir=d["version_dir"],
            job_dir=d["job_dir"],
            cases=tuple(CaseSpec(**c) for c in d["cases"]),
        )

    def write(self, path: Path) -> None:
        from medmoe.utils.files import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(self.to_json(), encoding="utf-8")
