"""From a registered name or a checkpoint file to a ready model.

Sits above :mod:`medmoe.sam3d.build` (construction, no file access) and
:mod:`medmoe.sam3d.checkpoint` (file access, no construction beyond shape probing), so that
neither of those imports the other in both directions.
"""

from __future__ import annotations

import os

from medmoe.errors import CheckpointError, InputError
from medmoe.sam3d.build import build_from_config
from medmoe.sam3d.checkpoint import identify, load_into, load_sam3d_checkpoint
from medmoe.sam3d.config import SAM3D_CONFIGS
from medmoe.sam3d.pretrained import PRETRAINED, pretrained_path
from medmoe.sam3d.sam import Sam3D


def build_sam3d(name: str, checkpoint: str | os.PathLike | None = None) -> Sam3D:
    """Build the registered model ``name`` (see ``SAM3D_CONFIGS``) in eval mode.

    With ``checkpoint``, the file is read by :func:`medmoe.sam3d.load_sam3d_checkpoint` and
    loaded strictly; a file that does not fit raises :class:`medmoe.errors.CheckpointError`.
    """
    if name not in SAM3D_CONFIGS:
        raise InputError(f"unknown model {name!r}; registered: {', '.join(SAM3D_CONFIGS)}")
    model = build_from_config(SAM3D_CONFIGS[name])
    if checkpoint is not None:
        load_into(model, load_sam3d_checkpoint(checkpoint), name=name)
    return model.eval()


def load_sam3d(path: str | os.PathLike, *, name: str | None = None):
    """Build the registered model that ``path`` fits and load it strictly (eval mode).

    ``name`` forces an architecture; otherwise it is identified from the parameter shapes, so
    ``sam_med3d.pth``, ``sam_med3d_turbo.pth`` and medmoe's own ``tiny`` checkpoints all load.
    """

    state = load_sam3d_checkpoint(path)
    name = name or identify(state)
    if name is None:
        raise CheckpointError(
            f"{path} fits no registered SAM-Med3D model ({', '.join(SAM3D_CONFIGS)})"
        )
    if name not in SAM3D_CONFIGS:
        raise CheckpointError(f"unknown model {name!r}; registered: {', '.join(SAM3D_CONFIGS)}")
    model = build_from_config(SAM3D_CONFIGS[name])
    load_into(model, state, name=name)
    return model.eval()


def load_pretrained(name: str) -> Sam3D:
    """The shipped model ``name`` (see :mod:`medmoe.sam3d.pretrained`), loaded strictly, in eval mode."""
    return load_sam3d(pretrained_path(name), name=PRETRAINED[name].arch)
