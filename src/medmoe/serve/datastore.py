"""MONAI Label's datastore and temporary images ("sessions"), under ``--data-dir`` only.

``<data_dir>/monailabel/`` holds ``images/``, ``labels/<tag>/`` and ``datastore.json`` (the
index: image id -> file, labels by tag, the client's ``params``). It persists across restarts,
as MONAI Label's own datastore does. File names are a hash of the image id, never the id itself,
and ids, tags and file names that could read as a path (``/``, ``\\``, ``..``, a leading dot,
control characters) are refused before any use, so nothing a client sends becomes a path.
``<data_dir>/monailabel-sessions/<uuid>/`` holds the images of ``/session/``; they expire after
their ``expiry`` (or the server's ``--session-ttl``) and are deleted at shutdown.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medmoe.data import Volume, load_volume
from medmoe.errors import InputError
from medmoe.serve.store import GZIP_MAGIC, NIFTI_MAGICS, ExpiringStore, NotFound, NotNifti
from medmoe.utils.files import atomic_write

TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
IMAGE_EXTS = (".nii.gz", ".nii", ".nrrd")
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
    if data[:2] == GZIP_MAGIC:
        sniffed = ".nii.gz"
    elif data[344:348] in NIFTI_MAGICS[:2] or data[4:8] in NIFTI_MAGICS[2:]:
        sniffed = ".nii"
    elif data[:7] == b"NRRD000":
        sniffed = ".nrrd"
    else:
        raise NotNifti("the upload is neither NIfTI (.nii, .nii.gz) nor NRRD (.nrrd)")
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


def _stem(image_id: str) -> str:
    return hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:32]


def load_upload(path: Path, shown: str) -> Volume:
    """``load_volume``, with errors naming the client's file instead of the server's path."""
    try:
        return load_volume(path)
    except InputError as err:
        raise InputError(str(err).replace(str(path), shown)) from None


def _check_entry(image_id: str, obj: dict) -> None:
    """An index entry read from disk names only files this module would have made."""
    check_id(image_id)
    image = obj["image"]
    if not re.fullmatch(r"[0-9a-f]{32}", image["file"]) or image["ext"] not in IMAGE_EXTS:
        raise ValueError(f"bad image entry for {image_id!r}")
    for tag, label in obj["labels"].items():
        check_tag(tag)
        if label["ext"] not in LABEL_EXTS:
            raise ValueError(f"bad label entry for {image_id!r}")


@dataclass
class Datastore:
    root: Path  # <data_dir>/monailabel
    max_cached: int = 8  # decoded images kept in memory
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        for part in (self.root / "images").glob("*.part*"):  # uploads cut short by a crash
            part.unlink(missing_ok=True)
        index = self.root / "datastore.json"
        self.objects: dict = {}
        if index.is_file():
            try:
                self.objects = dict(json.loads(index.read_text("utf-8"))["objects"])
                for image_id, obj in self.objects.items():
                    _check_entry(image_id, obj)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise InputError(
                    f"{index} is not a medmoe datastore index: move it away to start afresh"
                ) from None

    def _save_index(self) -> None:
        body = {"name": "medmoe", "description": "medmoe serve", "objects": self.objects}
        with atomic_write(self.root / "datastore.json") as tmp:
            tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")

    def image_file(self, image_id: str) -> Path:
        obj = self.objects.get(check_id(image_id))
        if obj is None:
            raise NotFound(f"no image {image_id!r} in the datastore")
        return self.root / "images" / (obj["image"]["file"] + obj["image"]["ext"])

    def add_image(self, image_id: str, data: bytes, filename: str | None, info: dict) -> str:
        """Store an image (replacing one of the same id) once it loads as a valid volume."""
        image_id = check_id(image_id)
        ext = file_ext(filename, data, IMAGE_EXTS)
        version = uuid.uuid4().hex
        part = self.root / "images" / f"{version}.part{ext}"
        part.write_bytes(data)
        try:
            volume = load_upload(part, base_name(filename) or image_id)
            with self._lock:
                old = self.objects.get(image_id)
                if old is not None:
                    self._remove_files(image_id, old)
                part.rename(self.root / "images" / (_stem(image_id) + ext))
                meta = {**info, "ts": int(time.time()), "version": version}
                self.objects[image_id] = {
                    "image": {"file": _stem(image_id), "ext": ext, "info": meta},
                    "labels": {},
                }
                self._cache[image_id] = (version, volume)
                self._trim()
                self._save_index()
        finally:
            part.unlink(missing_ok=True)
        return image_id

    def _remove_files(self, image_id: str, obj: dict) -> None:
        (self.root / "images" / (obj["image"]["file"] + obj["image"]["ext"])).unlink(
            missing_ok=True
        )
        for tag, label in obj["labels"].items():
            (self.root / "labels" / tag / (obj["image"]["file"] + label["ext"])).unlink(
                missing_ok=True
            )
        self._cache.pop(image_id, None)

    def _trim(self) -> None:
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def volume(self, image_id: str) -> tuple[Volume, str]:
        """The image as a volume and its version (which changes when the image is replaced)."""
        path = self.image_file(image_id)
        with self._lock:
            version = self.objects[image_id]["image"]["info"]["version"]
            hit = self._cache.get(image_id)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(image_id)
                return hit[1], version
        volume = load_upload(path, image_id)
        with self._lock:
            self._cache[image_id] = (version, volume)
            self._trim()
        return volume, version

    def save_label(self, image_id: str, tag: str, data: bytes, filename: str | None, info: dict):
        """Store a label of an image under a tag, byte for byte."""
        self.image_file(image_id)  # the image must exist
        tag = check_tag(tag)
        ext = file_ext(filename, data, LABEL_EXTS)
        folder = self.root / "labels" / tag
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            obj = self.objects[image_id]
            old = obj["labels"].get(tag)
            if old is not None:
                (folder / (obj["image"]["file"] + old["ext"])).unlink(missing_ok=True)
            with atomic_write(folder / (obj["image"]["file"] + ext)) as tmp:
                tmp.write_bytes(data)
            obj["labels"][tag] = {"ext": ext, "info": {**info, "ts": int(time.time())}}
            self._save_index()
        return image_id

    def label_file(self, image_id: str, tag: str) -> tuple[Path, str]:
        """The stored label's path and the file name to send it under."""
        tag = check_tag(tag)
        self.image_file(image_id)  # the image must exist
        obj = self.objects[image_id]
        label = obj["labels"].get(tag)
        if label is None:
            raise NotFound(f"no label {tag!r} for image {image_id!r}")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in image_id)
        folder = self.root / "labels" / tag
        return folder / (obj["image"]["file"] + label["ext"]), safe + label["ext"]

    def to_json(self) -> dict:
        """MONAI Label's ``GET /datastore/?output=all``: ids, extensions and infos, no paths."""
        with self._lock:
            objects = {
                k: {
                    "image": {"ext": v["image"]["ext"], "info": v["image"]["info"]},
                    "labels": v["labels"],
                }
                for k, v in self.objects.items()
            }
        return {"name": "medmoe", "description": "medmoe serve", "objects": objects}

    def status(self) -> dict:
        tags: dict[str, int] = {}
        for obj in self.objects.values():
            for tag in obj["labels"]:
                tags[tag] = tags.get(tag, 0) + 1
        done = sum(1 for o in self.objects.values() if DEFAULT_TAG in o["labels"])
        return {"total": len(self.objects), "completed": done, "label_tags": tags}


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
        self, *, root: Path, ttl_s: float, max_count: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.ttl_s = ttl_s
        super().__init__(root=root, max_count=max_count, clock=clock)

    def _ttl(self, entry: TempImage) -> float:
        return entry.expiry_s

    def add(self, data: bytes, filename: str | None, expiry_s: float | None) -> TempImage:
        """Store an upload as a new temporary image once it loads as a valid volume."""
        self._check_room()
        ext = file_ext(filename, data, IMAGE_EXTS)
        with self._new_directory() as (sid, directory):
            path = directory / f"image{ext}"
            path.write_bytes(data)
            volume = load_upload(path, base_name(filename) or "the upload")
        now = self.clock()
        ttl = self.ttl_s if not expiry_s or expiry_s <= 0 else min(expiry_s, self.ttl_s)
        item = TempImage(sid, directory, volume, path.name, ttl, now, now)
        self._add(item)
        return item
