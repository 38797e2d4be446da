"""A trained fundus model on disk: ``model.safetensors`` + ``config.json`` (its MultiTaskConfig,
which holds the image normalisation, the ImageNet mean/std, that evaluate and predict apply)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medmoe.errors import CheckpointError, first_line
from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE
from medmoe.utils.files import atomic_write


def save_fundus_model(model: MultiTaskMoE, out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    with atomic_write(out / "config.json") as tmp:
        tmp.write_text(json.dumps(model.config.to_dict(), indent=2))
    return out


def load_fundus_model(
    path: str | os.PathLike, *, device: torch.device | str = "cpu"
) -> MultiTaskMoE:
    """The model saved in folder ``path``, in eval mode on ``device``."""
    path = Path(path)
    try:
        cfg = MultiTaskConfig.from_dict(json.loads((path / "config.json").read_text()))
        model = MultiTaskMoE(config=cfg)
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path} is not a medmoe fundus model: {first_line(err)}") from None
    return model.to(device).eval()
