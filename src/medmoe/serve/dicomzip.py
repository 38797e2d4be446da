"""A zip of one DICOM series, uploaded to the viewer or MONAI Label's datastore, as a volume; and
masks of such a scan as DICOM SEG.

The zip is read by :func:`medmoe.data.dicom.read_series` (members in memory, each at most
``MAX_MEMBER_BYTES``, at most ``MAX_FILES`` of them). Before any member is decompressed the
central directory is checked here: the sizes it declares (which :mod:`zipfile` holds every
member to) must sum to at most the server's ``--max-volume-mb``, so a zip bomb is refused from
its directory alone, and those bytes (the raw slices, held while the series is stacked) plus the
float32 volume's estimate are reserved in the memory budget first. Errors name the client's
file, never the server's path.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from medmoe.data.dicom import MAX_FILES, DicomSeries, read_series
from medmoe.data.dicom_seg import Algorithm, seg_bytes
from medmoe.data.headers import VolumeTooLarge
from medmoe.errors import InputError, first_line
from medmoe.serve.engine import Engine

ZIP_MAGIC = b"PK\x03\x04"
ZIP_EXT = ".zip"


def is_zip(head: bytes) -> bool:
    return head[:4] == ZIP_MAGIC


def declared_bytes(path: Path, *, shown: str, limit: int) -> int:
    """The bytes a zip's members declare, refused over ``limit`` or ``MAX_FILES`` members."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{shown}: not a readable zip ({first_line(err)})") from None
    if len(members) > MAX_FILES:
        raise InputError(f"{shown}: {len(members)} files, more than {MAX_FILES} in one zip")
    total = sum(m.file_size for m in members)
    if total > limit:
        raise VolumeTooLarge(
            f"{shown}: its files unpack to {total >> 20} MiB, over the server's limit of "
            f"{limit >> 20} MiB (--max-volume-mb)"
        )
    return total


def load_dicom_zip(
    path: Path, *, shown: str, limit: int, reserve: Callable[[int], None] | None = None
) -> DicomSeries:
    """The one series in the zip ``path`` (several are refused with their list)."""
    raw = declared_bytes(path, shown=shown, limit=limit)
    if reserve is not None:  # the raw slices while stacking, and a float32 of 16-bit pixels
        reserve(3 * raw)
    try:
        series = read_series(path, max_bytes=limit)
    except InputError as err:
        message = str(err).replace(str(path), shown).replace("--series UID", "one series per zip")
        raise type(err)(message) from None
    if reserve is not None:
        reserve(series.volume.array.nbytes)
    return series


def algorithm(engine: Engine, expert: str | None) -> Algorithm:
    """What a SEG made by this server names as its algorithm."""
    return Algorithm(
        model="SAM-Med3D-MoE" if engine.is_moe else "SAM-Med3D", expert=expert or "general"
    )


def mask_seg(
    mask: np.ndarray, headers: Sequence, *, engine: Engine, expert: str | None, label: str
) -> bytes:
    """A binary mask on the series' grid as the bytes of a DICOM SEG with one segment."""
    return seg_bytes(
        (np.asarray(mask) > 0).astype(np.uint8),
        headers,
        segments={1: label or "segment"},
        algorithm=algorithm(engine, expert),
    )
