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

from medmoe.utils.files import atomic_write


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


class EmbeddingCache:
    def __init__(
        self, *, root: str | os.PathLike, base_sha256: str, encoder: Callable[[Tensor], Tensor]
    ) -> None:
        self.root = Path(root) / base_sha256[:16]
        self.encoder = encoder
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

    def get(self, key: str, image: np.ndarray | Callable[[], np.ndarray]) -> Tensor:
        """The ``(1, C, n, n, n)`` embedding of ``image`` (or of ``image()``), from disk if cached."""
        emb = self._read(key)
        if emb is not None:
            return emb
        volume = image() if callable(image) else image
        x = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None]
        with torch.no_grad():
            emb = self.encoder(x).detach().float().cpu().contiguous()
        self.encoder_calls += 1
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path(key)) as tmp:
            save_file({"embedding": emb}, str(tmp), metadata={"key": key, "sha256": _digest(emb)})
        return emb
