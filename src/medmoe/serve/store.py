"""Sessions on disk and in memory: ids, the data directory, upload limits and expiry.

Every file the server writes lies in ``<data_dir>/sessions/<id>/``, where ``<id>`` is a random
UUID made here; names that come from a client are never used to build a path. Uploads are
streamed to ``upload.part`` with a running byte count, so an oversized body is refused while it
arrives (nothing is spooled to the system temp directory), and renamed only once the scan loads.
:class:`ExpiringStore` holds the id check, expiry and deletion shared with MONAI Label's
temporary images (:class:`medmoe.serve.monailabel.temp_images.TempImages`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from medmoe.data import Volume, load_volume
from medmoe.data.headers import check_memory, inspect_upload
from medmoe.errors import InputError, MedmoeError
from medmoe.serve.budget import Busy, MemoryBudget
from medmoe.serve.dicomzip import ZIP_EXT, is_zip, load_dicom_zip
from medmoe.serve.engine import Engine
from medmoe.serve.session import Session

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
GZIP_MAGIC = b"\x1f\x8b"
NIFTI_MAGICS = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")  # at byte 344 (v1) / 4 (v2)


class NotFound(MedmoeError, KeyError):
    """No live session has this id (never existed, deleted or expired)."""


class TooLarge(InputError):
    """The upload is over the size limit."""


class NotNifti(InputError):
    """The upload is not a NIfTI file."""


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path  # every file the server writes lies under this folder
    max_upload_bytes: int = 512 << 20  # a body over this is refused with 413 while it arrives
    session_ttl_s: float = 1800.0  # a session unused for this long is deleted
    max_sessions: int = 32  # more at once are refused with 503
    max_volume_bytes: int = 1 << 30  # one scan in memory (as float32 at least): 413 above
    memory_budget_bytes: int = 4 << 30  # all scans held at once: 503 above (after eviction)
    datastore_quota_bytes: int = 10 << 30  # the datastore's files on disk: 413 above
    max_uploads: int = 4  # uploads arriving at once: 503 above
    bind_host: str = "127.0.0.1"  # the address served: Host headers must name it (or loopback)
    public_urls: tuple[str, ...] = ()  # where clients reach the server (a reverse proxy's URL)
    allow_origins: tuple[str, ...] = ()  # other web origins (e.g. OHIF's) allowed, with CORS
    studies: str | None = None  # a DICOMweb root: MONAI Label's datastore is then its series


def check_upload_name(name: str | None) -> str:
    """The client's file name, checked: display only, but a name with a path in it is refused."""
    if not name:
        return "scan.nii.gz"
    if "/" in name or "\\" in name or "\x00" in name or ".." in name or name.startswith("~"):
        raise InputError(f"file name {name!r} is refused: it must not contain a path or '..'")
    if not name.lower().endswith((".nii", ".nii.gz", ZIP_EXT)):
        raise NotNifti(
            f"file name {name!r}: only NIfTI (.nii, .nii.gz) or a zip of a DICOM series can be "
            "uploaded"
        )
    return name


def sniff_nifti(head: bytes) -> str:
    """``".nii.gz"``, ``".nii"`` or ``".zip"`` (a DICOM series) from a file's first bytes;
    refuse anything else."""
    if is_zip(head):
        return ZIP_EXT
    if head[:2] == GZIP_MAGIC:
        return ".nii.gz"
    if head[344:348] in NIFTI_MAGICS[:2] or head[4:8] in NIFTI_MAGICS[2:]:
        return ".nii"
    raise NotNifti("the upload is not a NIfTI file (.nii or .nii.gz) or a zip of a DICOM series")


def load_upload(
    path: Path, *, ext: str, shown: str, limit: int, reserve: Callable[[int], None] | None = None
) -> Volume:
    """An untrusted upload as a volume: its header is checked first (one file only, a known
    voxel type, the memory it needs under ``limit``), so no reader opens another path or
    allocates for an absurd size; ``reserve`` is then given the bytes the volume needs, before
    any voxel is read. Errors name ``shown`` (the client's file), never ``path``."""
    try:
        info = inspect_upload(path, ext)
        check_memory(info, limit=limit, source=str(path))
        if reserve is not None:
            reserve(info.memory_bytes)
        return load_volume(path, max_bytes=limit)
    except InputError as err:
        raise type(err)(str(err).replace(str(path), shown)) from None


class Expiring(Protocol):
    """What an :class:`ExpiringStore` keeps: an id, its directory and when it was last used."""

    id: str
    directory: Path
    last_used: float


E = TypeVar("E", bound=Expiring)


class ExpiringStore(Generic[E]):
    """Entries with a directory ``<root>/<id>/`` each (``id`` a random UUID's hex), deleted with
    it once unused for longer than :meth:`_ttl`; the index changes only under a lock."""

    def __init__(
        self,
        *,
        root: Path,
        max_count: int,
        clock: Callable[[], float],
        budget: MemoryBudget | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.max_count = max_count
        self.clock = clock
        self.budget = budget  # each entry's volume is reserved here under its id
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.iterdir():  # entries of an earlier run: their memory state is gone
            if SESSION_ID.match(stale.name):
                shutil.rmtree(stale, ignore_errors=True)
        self._entries: dict[str, E] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _ttl(self, entry: E) -> float:
        """Seconds ``entry`` may go unused before it expires."""
        raise NotImplementedError

    def expire(self) -> list[str]:
        """Delete the entries unused for longer than their ttl; their ids."""
        now = self.clock()
        with self._lock:
            old = [e.id for e in self._entries.values() if now - e.last_used > self._ttl(e)]
        for sid in old:
            self.delete(sid)
        return old

    def get(self, sid: str) -> E:
        """The live entry ``sid`` (400 for a malformed id, 404 for none); renews its lease."""
        if not SESSION_ID.match(sid or ""):
            raise InputError("invalid session id")
        self.expire()
        with self._lock:
            entry = self._entries.get(sid)
        if entry is None:
            raise NotFound(f"no session {sid} (it may have expired)")
        entry.last_used = self.clock()
        return entry

    def delete(self, sid: str) -> None:
        with self._lock:
            entry = self._entries.pop(sid, None)
        if entry is not None:
            shutil.rmtree(entry.directory, ignore_errors=True)
        if self.budget is not None:
            self.budget.release(sid)

    def close(self) -> None:
        for sid in list(self._entries):
            self.delete(sid)

    def _check_room(self) -> None:
        """Expire old entries, then refuse (503) if the store is still full."""
        self.expire()
        if len(self._entries) >= self.max_count:
            raise Busy(f"the server already holds {self.max_count} sessions; retry later")

    @contextlib.contextmanager
    def _new_directory(self) -> Iterator[tuple[str, Path]]:
        """A new id and its empty directory, removed again if the block raises."""
        sid = uuid.uuid4().hex
        directory = self.root / sid
        directory.mkdir()
        try:
            yield sid, directory
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            if self.budget is not None:
                self.budget.release(sid)
            raise

    def _load(self, sid: str, path: Path, *, ext: str, shown: str, limit: int) -> Volume:
        """:func:`load_upload`, with the volume's bytes reserved in the budget under ``sid``."""
        reserve = None if self.budget is None else functools.partial(self.budget.reserve, sid)
        return load_upload(path, ext=ext, shown=shown, limit=limit, reserve=reserve)

    def _load_any(
        self, sid: str, path: Path, *, ext: str, shown: str, limit: int
    ) -> tuple[Volume, list | None]:
        """:meth:`_load`, or a zip of a DICOM series: the volume, and the series' slice headers
        (what a DICOM SEG of it must reference; ``None`` for NIfTI/NRRD)."""
        if ext != ZIP_EXT:
            return self._load(sid, path, ext=ext, shown=shown, limit=limit), None
        reserve = None if self.budget is None else functools.partial(self.budget.reserve, sid)
        series = load_dicom_zip(path, shown=shown, limit=limit, reserve=reserve)
        return series.volume, series.headers

    def _add(self, entry: E) -> None:
        with self._lock:
            self._entries[entry.id] = entry


class SessionStore(ExpiringStore[Session]):
    """The viewer's sessions under ``<data_dir>/sessions/``, expiring after ``session_ttl_s``."""

    def __init__(
        self,
        *,
        config: ServeConfig,
        engine: Engine,
        budget: MemoryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        super().__init__(
            root=Path(config.data_dir) / "sessions",
            max_count=config.max_sessions,
            clock=clock,
            budget=budget,
        )

    def _ttl(self, entry: Session) -> float:
        return self.config.session_ttl_s

    async def create(self, body: AsyncIterator[bytes], *, name: str | None) -> Session:
        """Stream an upload into a new session directory and load it; clean up on any error."""
        name = check_upload_name(name)
        self._check_room()
        with self._new_directory() as (sid, directory):
            part = directory / "upload.part"
            size, head = 0, b""
            with open(part, "wb") as fh:
                async for chunk in body:
                    size += len(chunk)
                    if size > self.config.max_upload_bytes:
                        raise TooLarge(
                            f"the upload is over the limit of {self.config.max_upload_bytes} bytes"
                        )
                    if len(head) < 348:
                        head += chunk[: 348 - len(head)]
                    fh.write(chunk)
            if size == 0:
                raise InputError("the upload is empty")
            ext = sniff_nifti(head)
            path = part.rename(directory / f"upload{ext}")
            limit = self.config.max_volume_bytes
            volume, headers = await asyncio.to_thread(
                self._load_any, sid, path, ext=ext, shown=name, limit=limit
            )
            session = await asyncio.to_thread(
                Session,
                id=sid,
                directory=directory,
                volume=volume,
                name=name,
                engine=self.engine,
                dicom_headers=headers,
            )
        session.last_used = self.clock()
        self._add(session)
        return session
