"""Atomic file output and file hashing.

A result is written to a temporary file in the destination's directory, flushed and fsynced, then
renamed over the destination, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp creates 0600 files; a finished result gets the permissions a plain open() would give it.
# The umask can only be read by setting it, so it is read once, at import (single-threaded).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed to ``path``.

    The caller writes the temporary path (with any library: torch.save, nibabel, safetensors...).
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    del mode  # kept for call-site readability; writers open the temporary path themselves
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json_record(path: Path, cls, *, fmt: str, what: str):
    """Read a JSON file into the dataclass ``cls``; refuse unknown keys and another ``format``.

    Raises :class:`medmoe.errors.CheckpointError` naming ``what`` the folder should have been.
    """
    from medmoe.errors import CheckpointError

    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} is not {what}: no {path.name}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {fmt} file")
    from medmoe.utils.config import config_from_dict

    return config_from_dict(cls, raw, what=str(path))
