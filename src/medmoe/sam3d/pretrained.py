"""Named pretrained models shipped inside the package (as SAM-Med3D ships its checkpoint).

``medmoe-brain`` is medmoe's own general expert for brain MRI, made by ``medmoe pretrain`` on the
training brain only; its card is ``docs/models/medmoe-brain.md``. Every option that takes a
SAM-Med3D checkpoint also takes a name from :data:`PRETRAINED`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from medmoe.errors import CheckpointError
from medmoe.utils.files import file_sha256

WEIGHTS_DIR = Path(__file__).parent / "weights"


class Pretrained(NamedTuple):
    arch: str  # registered architecture (medmoe.sam3d.SAM3D_CONFIGS)
    file: str  # in WEIGHTS_DIR
    sha256: str  # of the file; the card states the same


PRETRAINED: dict[str, Pretrained] = {
    "medmoe-brain": Pretrained(
        arch="tiny",
        file="medmoe-brain.safetensors",
        sha256="e0012ead128ceb8f5c2d44eaffe3abadcceada5460918f0d77eb04a3d4784f20",
    ),
}


def pretrained_path(name: str) -> Path:
    """The shipped file of ``name``, its SHA-256 checked."""
    if name not in PRETRAINED:
        raise CheckpointError(
            f"unknown pretrained model {name!r}; shipped: {', '.join(PRETRAINED)}"
        )
    entry = PRETRAINED[name]
    path = WEIGHTS_DIR / entry.file
    if not path.is_file():
        raise CheckpointError(f"{name}: its weights {path} are missing; reinstall medmoe")
    if file_sha256(path) != entry.sha256:
        raise CheckpointError(f"{name}: {path} does not match its SHA-256 {entry.sha256[:12]}...")
    return path


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path, or the shipped file of a pretrained name (a file of that name wins)."""
    path = Path(path_or_name)
    if not path.is_file() and str(path_or_name) in PRETRAINED:
        return pretrained_path(str(path_or_name))
    return path
