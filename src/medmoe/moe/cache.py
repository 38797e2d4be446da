"""On-disk cache of image embeddings for training with a frozen encoder.

The encoder dominates the cost of a step, and it is frozen during expert and gate training, so
every (case, crop, augmentation) is encoded once. Each entry is one safetensors shard named by
a hash of its key, under a folder named by the base checkpoint's hash (a different base never
reads stale embeddings). A shard stores the SHA-256 of its tensor bytes; a shard that is
truncated, corrupt or belongs to another key is detected, counted in ``repaired`` and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from medmoe.errors import InputError
from medmoe.utils.files import atomic_write


def _device_of(encoder) -> torch.device:
    params = getattr(encoder, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


class EmbeddingCache:
    def __init__(
        self,
        *,
        root: str | os.PathLike,
        base_sha256: str,
        encoder: Callable[[Tensor], Tensor],
        device: torch.device | str | None = None,
    ) -> None:
        """``device``: where ``encoder`` runs (default: where its parameters are, else CPU)."""
        self.root = Path(root) / base_sha256[:16]
        self.encoder = encoder
        self.device = torch.device(device) if device is not None else _device_of(encoder)
        self.encoder_calls = 0
        self.repaired = 0

    def path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha1(key.encode()).hexdigest()}.safetensors"

    def _read(self, key: str) -> Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            emb = load_file(str(path))["embedding"]
        except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
            self.repaired += 1
            return None
        if meta.get("key") != key or meta.get("sha256") != _digest(emb):
            self.repaired += 1
            return None
        return emb

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    @torch.no_grad()
    def encode(self, volume: np.ndarray) -> Tensor:
        """Run the encoder on one ``(128,128,128)`` volume, on the encoder's device."""
        x = torch.as_tensor(np.asarray(volume, dtype=np.float32), device=self.device)
        x = x.reshape(1, 1, *x.shape)  # (not x[None, None]: see tests/train/test_device_discipline)
        return self.encoder(x)

    def get(self, key: str, image: np.ndarray | Callable[[], np.ndarray] | None) -> Tensor:
        """The ``(1, C, n, n, n)`` CPU embedding of ``image`` (or of ``image()``), from disk if
        cached. ``image=None`` only reads: a missing entry is an error."""
        emb = self._read(key)
        if emb is not None:
            return emb
        if image is None:
            raise InputError(f"embedding cache {self.root} has no valid entry for crop {key!r}")
        volume = image() if callable(image) else image
        emb = self.encode(volume).detach().float().cpu().contiguous()
        self.encoder_calls += 1
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(key)) as tmp:
            save_file({"embedding": emb}, str(tmp), metadata={"key": key, "sha256": _digest(emb)})
        return emb
