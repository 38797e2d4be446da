"""What MONAI Label's clients name: image ids, label tags and file names, each checked before
any use so that nothing a client sends becomes a path; and the extension a file is stored under,
from its name checked against its magic bytes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from medmoe.data.headers import DetachedData, read_nrrd_fields
from medmoe.errors import InputError
from medmoe.serve.dicomzip import ZIP_EXT, is_zip
from medmoe.serve.store import GZIP_MAGIC, NIFTI_MAGICS, NotNifti

TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
IMAGE_EXTS = (".nii.gz", ".nii", ".nrrd", ZIP_EXT)  # .zip: one DICOM series
LABEL_EXTS = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd")
DEFAULT_TAG = "final"


def check_id(value: str | None, what: str = "image id") -> str:
    """An image id, refused (400) if it could be read as a path or is unprintable."""
    if not value:
        raise InputError(f"the {what} is empty")
    if (
        len(value) > 128
        or "/" in value
        or "\\" in value
        or ".." in value
        or value.startswith((".", "~", " "))
        or _CONTROL.search(value)
    ):
        raise InputError(f"{what} {value!r} is refused: no '/', '\\', '..' or leading '.'")
    return value


def check_tag(value: str | None) -> str:
    tag = value or DEFAULT_TAG
    if not TAG.match(tag):
        raise InputError(f"tag {tag!r} is refused: letters, digits, '_' and '-' only")
    return tag


def file_ext(filename: str | None, data: bytes, allowed: tuple[str, ...]) -> str:
    """The extension to store ``data`` under: from the file name when it names one of
    ``allowed`` (and no path), checked against the content's magic bytes."""
    filename = base_name(filename)
    if is_zip(data):
        sniffed = ZIP_EXT
    elif data[:2] == GZIP_MAGIC:
        sniffed = ".nii.gz"
    elif data[344:348] in NIFTI_MAGICS[:2] or data[4:8] in NIFTI_MAGICS[2:]:
        sniffed = ".nii"
    elif data[:7] == b"NRRD000":
        sniffed = ".nrrd"
    else:
        raise NotNifti(
            "the upload is neither NIfTI (.nii, .nii.gz), NRRD (.nrrd) nor a zip of a DICOM series"
        )
    name = (filename or "").lower()
    named = next((e for e in allowed if name.endswith(e)), None)
    if named is not None and named.endswith(sniffed):
        return named  # e.g. ".seg.nrrd"
    if sniffed not in allowed:
        raise NotNifti(f"a {sniffed} file is not accepted here")
    return sniffed


def base_name(filename: str | None) -> str | None:
    """The last component of a client's file name (MONAI Label's client sends its local path),
    used only for its extension; a name with a ``..`` component is refused."""
    if not filename:
        return None
    parts = re.split(r"[/\\]", filename)
    if ".." in parts or _CONTROL.search(filename):
        raise InputError(f"file name {filename!r} is refused: it must not contain '..'")
    return parts[-1]


def file_stem(image_id: str) -> str:
    """The file name stem of an image id: a hash, never the id itself."""
    return hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:32]


def read_head(path: Path, n: int = 348) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def check_single_file(path: Path, ext: str, *, shown: str) -> None:
    """Refuse a label whose header names a second file (a NRRD ``data file``, a NIfTI pair):
    labels are stored byte for byte, but whatever reads them later must never be led to
    another path. The rest of the header is not checked: Slicer's ``.seg.nrrd`` may be 4-D."""
    if ext.endswith(".nrrd"):
        try:
            detached = "data file" in read_nrrd_fields(path, attached=True)
        except InputError as err:  # name the client's file, not the server's path
            raise InputError(str(err).replace(str(path), shown)) from None
    else:
        head = read_head(path)
        detached = ext == ".nii" and (head[344:348] == b"ni1\x00" or head[4:8] == b"ni2\x00")
    if detached:
        raise DetachedData(f"{shown}: a header naming a separate data file is refused")
