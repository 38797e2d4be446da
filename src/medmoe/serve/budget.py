"""One memory budget for everything the server keeps per upload: viewer sessions, MONAI Label's
temporary images and the datastore's decoded volumes.

Each holder *reserves* the bytes its volume needs (known from the header, before any voxel is
read) and *releases* them when the volume goes. When a reservation does not fit, the budget
first asks its evictors to drop what can be rebuilt (the datastore's cached volumes, which are
read again from disk on their next use); if that is not enough the reservation is refused with
:class:`OverBudget` (HTTP 503), so a flood of uploads cannot exhaust the machine.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator

from medmoe.errors import MedmoeError


class Busy(MedmoeError, RuntimeError):
    """The server is at one of its limits of things held at once (HTTP 503)."""


class OverBudget(Busy):
    """The server's memory budget is full (HTTP 503)."""


class UploadSlots:
    """At most ``limit`` uploads arriving at once; one more is refused (503) rather than queued,
    so slow uploads cannot pile up disk writes and memory behind them."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise Busy(f"{self.limit} uploads are already arriving (--max-uploads): retry later")
        try:
            yield
        finally:
            self._free.release()


class MemoryBudget:
    """Bytes reserved by key, at most ``limit`` in all. ``evictors`` are called, in order, to
    free memory when a reservation does not fit; each returns whether it freed anything."""

    def __init__(self, *, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self._held: dict[Hashable, int] = {}
        self._lock = threading.Lock()
        self._evictors: list[Callable[[], bool]] = []

    @property
    def used(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def add_evictor(self, evict: Callable[[], bool]) -> None:
        self._evictors.append(evict)

    def _try(self, key: Hashable, nbytes: int) -> bool:
        with self._lock:
            others = sum(n for k, n in self._held.items() if k != key)
            if others + nbytes > self.limit:
                return False
            self._held[key] = nbytes
            return True

    def reserve(self, key: Hashable, nbytes: int) -> None:
        """Hold ``nbytes`` under ``key`` (replacing what ``key`` held), evicting caches if
        needed; :class:`OverBudget` when it cannot fit."""
        if nbytes > self.limit:
            raise OverBudget(self._message(nbytes))
        while not self._try(key, nbytes):
            if not any(evict() for evict in self._evictors):
                raise OverBudget(self._message(nbytes))

    def release(self, key: Hashable) -> None:
        with self._lock:
            self._held.pop(key, None)

    def _message(self, nbytes: int) -> str:
        mib = 1 << 20
        return (
            f"the server's memory budget is full ({self.used / mib:.0f} of {self.limit / mib:.0f}"
            f" MiB held, {nbytes / mib:.1f} MiB more needed; --memory-budget-mb): "
            "close a session or retry later"
        )
