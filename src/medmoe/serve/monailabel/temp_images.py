"""MONAI Label's temporary images (its ``/session/``), under ``<data_dir>/monailabel-sessions/``.

Each is an uploaded image in a folder ``<uuid>/`` of its own; it expires after its ``expiry``
(at most the server's ``--session-ttl``) and is deleted at shutdown, as MONAI Label's own
sessions are. Its volume is reserved in the server's memory budget while it lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medmoe.data import Volume
from medmoe.serve.budget import MemoryBudget
from medmoe.serve.monailabel.files import IMAGE_EXTS, base_name, file_ext, read_head
from medmoe.serve.store import ExpiringStore


@dataclass
class TempImage:
    id: str
    directory: Path
    volume: Volume
    name: str
    expiry_s: float
    created: float
    last_used: float

    def to_json(self) -> dict:
        return {
            "name": self.id,
            "image": self.name,
            "meta": {},
            "create_ts": int(self.created),
            "last_access_ts": int(self.last_used),
            "expiry": int(self.expiry_s),
        }


class TempImages(ExpiringStore[TempImage]):
    """MONAI Label's ``/session/``: an uploaded image that lives until it expires."""

    def __init__(
        self,
        *,
        root: Path,
        ttl_s: float,
        max_count: int,
        max_volume_bytes: int = 1 << 30,
        budget: MemoryBudget | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_volume_bytes = max_volume_bytes
        super().__init__(root=root, max_count=max_count, clock=clock, budget=budget)

    def _ttl(self, entry: TempImage) -> float:
        return entry.expiry_s

    def add(self, src: Path, filename: str | None, expiry_s: float | None) -> TempImage:
        """Store the uploaded file ``src`` (moved) as a new temporary image once it loads as a
        valid volume."""
        self._check_room()
        ext = file_ext(filename, read_head(src), IMAGE_EXTS)
        with self._new_directory() as (sid, directory):
            path = directory / f"image{ext}"
            src.rename(path)
            shown = base_name(filename) or "the upload"
            volume, _ = self._load_any(sid, path, ext=ext, shown=shown, limit=self.max_volume_bytes)
        now = self.clock()
        ttl = self.ttl_s if not expiry_s or expiry_s <= 0 else min(expiry_s, self.ttl_s)
        item = TempImage(sid, directory, volume, path.name, ttl, now, now)
        self._add(item)
        return item
