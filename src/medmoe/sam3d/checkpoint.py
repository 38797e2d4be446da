"""Reading and writing SAM-Med3D checkpoints in the published format.

Published files are ``torch.save({'model_state_dict': state_dict, ...})``. medmoe reads them
with ``weights_only=True`` only: a file that would need to run code to unpickle is refused.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from medmoe.errors import CheckpointError, first_line
from medmoe.sam3d.build import meta_state_shapes
from medmoe.sam3d.config import SAM3D_CONFIGS
from medmoe.sam3d.pretrained import resolve_checkpoint
from medmoe.utils.files import atomic_write

_MAX_LISTED = 8


def load_sam3d_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a checkpoint into a plain state dict.

    Accepts ``{'model_state_dict': sd}``, a bare state dict, and keys prefixed by ``module.``
    (as saved from DistributedDataParallel). Always ``map_location="cpu"``, ``weights_only=True``.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return normalize_state_dict(load_file(path), source=str(path))
        except Exception as err:  # a corrupt header raises safetensors' own error types
            raise CheckpointError(f"cannot read {path}: {first_line(err)}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} could not be loaded as a weights-only checkpoint (it is corrupt, or it needs "
            f"code to unpickle, which medmoe refuses to run): {_unpickler_detail(err)}"
        ) from None
    except Exception as err:  # corrupt or truncated zip archives raise many different types
        first = first_line(err)
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(err).__name__}: {first}"
        ) from None
    return normalize_state_dict(obj, source=str(path))


def _unpickler_detail(err: Exception) -> str:
    """The informative line of torch's weights-only refusal (its message spans a paragraph)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if "GLOBAL" in ln or ln.startswith("Unsupported"):
            return ln
    return lines[0] if lines else type(err).__name__


def normalize_state_dict(obj: object, *, source: str = "checkpoint") -> dict[str, Tensor]:
    """Unwrap ``model_state_dict`` and strip a ``module.`` prefix; check that values are tensors."""
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source} holds no state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} is not a state dict: non-tensor entries {bad[:_MAX_LISTED]}"
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def identify(state_dict: Mapping[str, Tensor]) -> str | None:
    """The registered model whose parameter names and shapes the state dict matches exactly."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for name, config in SAM3D_CONFIGS.items():
        if meta_state_shapes(config) == shapes:
            return name
    return None


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, name: str) -> None:
    """Strictly load ``state_dict`` into ``model`` (built as ``name``), or raise a clear error."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k]
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes: {_listing(wrong)}")
        fits = identify(state_dict)
        hint = f"it fits the registered model {fits!r}" if fits else "it fits no registered model"
        raise CheckpointError(
            f"checkpoint does not fit model {name!r} ({'; '.join(parts)}); {hint}"
        )
    model.load_state_dict(state_dict, strict=True)


def save_sam3d_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``{'model_state_dict': ...}`` as the published code does, atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        torch.save({"model_state_dict": state}, tmp)
