"""MONAI Label's datastore, under ``<data_dir>/monailabel/`` only.

``<data_dir>/monailabel/`` holds ``images/``, ``labels/<tag>/`` and ``datastore.json`` (the
index: image id -> file, labels by tag, the client's ``params``). It persists across restarts,
as MONAI Label's own datastore does. File names are a hash of the image id, never the id itself,
and ids, tags and file names that could read as a path (``/``, ``\\``, ``..``, a leading dot,
control characters) are refused before any use, so nothing a client sends becomes a path.
Re-uploading an id with other content needs ``overwrite``; the files count against a quota, and
decoded volumes are cached within the server's memory budget (evicted first when it is full).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from medmoe.data import Volume
from medmoe.data.dicom_seg import Algorithm, seg_bytes
from medmoe.errors import InputError
from medmoe.serve.budget import MemoryBudget
from medmoe.serve.dicomzip import ZIP_EXT, load_dicom_zip
from medmoe.serve.monailabel.files import (
    DEFAULT_TAG,
    IMAGE_EXTS,
    LABEL_EXTS,
    base_name,
    check_id,
    check_single_file,
    check_tag,
    file_ext,
    file_stem,
    read_head,
)
from medmoe.serve.monailabel.labelfile import read_label, segment_names
from medmoe.serve.store import (
    NotFound,
    TooLarge,
    load_upload,
)
from medmoe.utils.files import atomic_write, file_sha256


class Conflict(InputError):
    """The request would replace something the client did not ask to replace (HTTP 409)."""


class QuotaFull(TooLarge):
    """The datastore's files would pass ``--datastore-quota-mb`` (HTTP 413)."""


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
    max_volume_bytes: int = 1 << 30  # one image in memory
    quota_bytes: int = 10 << 30  # images and labels on disk
    budget: MemoryBudget | None = None  # cached volumes are reserved here, and evicted first
    algorithm: Algorithm = Algorithm(model="SAM-Med3D")  # named in the SEGs of saved labels
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
        self.disk_bytes = sum(self._sizes(obj) for obj in self.objects.values())
        if self.budget is not None:
            self.budget.add_evictor(self.evict_one)

    def _files(self, obj: dict) -> list[Path]:
        stem = obj["image"]["file"]
        files = [self.root / "images" / (stem + obj["image"]["ext"])]
        files += [self.root / "labels" / t / (stem + v["ext"]) for t, v in obj["labels"].items()]
        return files

    def _sizes(self, obj: dict) -> int:
        return sum(f.stat().st_size for f in self._files(obj) if f.is_file())

    def _check_quota(self, more: int) -> None:
        if self.disk_bytes + more > self.quota_bytes:
            raise QuotaFull(
                f"the datastore quota of {self.quota_bytes / 2**20:.0f} MiB is full "
                "(--datastore-quota-mb): delete images first"
            )

    def _save_index(self) -> None:
        body = {"name": "medmoe", "description": "medmoe serve", "objects": self.objects}
        with atomic_write(self.root / "datastore.json") as tmp:
            tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")

    def image_file(self, image_id: str) -> Path:
        obj = self.objects.get(check_id(image_id))
        if obj is None:
            raise NotFound(f"no image {image_id!r} in the datastore")
        return self.root / "images" / (obj["image"]["file"] + obj["image"]["ext"])

    def _sha256(self, obj: dict) -> str:
        return obj["image"].get("sha256") or file_sha256(self._files(obj)[0])

    def add_image(
        self, image_id: str, src: Path, filename: str | None, info: dict, *, overwrite: bool
    ) -> dict:
        """Store the uploaded file ``src`` (moved, not copied) as ``image_id`` once it loads as
        a valid volume. The same content again changes nothing; other content under an existing
        id is a :class:`Conflict` unless ``overwrite``, which drops the old image's labels."""
        image_id = check_id(image_id)
        ext = file_ext(filename, read_head(src), IMAGE_EXTS)
        digest = file_sha256(src)
        old = self.objects.get(image_id)
        if old is not None and self._sha256(old) == digest:
            return {"image": image_id}  # unchanged: its labels stay
        if old is not None and not overwrite:
            raise Conflict(
                f"image {image_id!r} already exists with other content and "
                f"{len(old['labels'])} label(s): add overwrite=true to replace it"
            )
        self._check_quota(src.stat().st_size - (self._sizes(old) if old else 0))
        version = uuid.uuid4().hex
        part = self.root / "images" / f"{version}.part{ext}"
        src.rename(part)
        try:
            loaded = self._load(image_id, part, ext, base_name(filename) or image_id)
            with self._lock:
                dropped = sorted(self._remove_files(old)) if old else []  # overwrite=true
                part.rename(self.root / "images" / (file_stem(image_id) + ext))
                meta = {**info, "ts": int(time.time()), "version": version}
                self.objects[image_id] = {
                    "image": {
                        "file": file_stem(image_id),
                        "ext": ext,
                        "info": meta,
                        "sha256": digest,
                    },
                    "labels": {},
                }
                self.disk_bytes += self._sizes(self.objects[image_id])
                self._cache[image_id] = (version, *loaded)
                self._save_index()
            self._trim()
        finally:
            part.unlink(missing_ok=True)
        return {"image": image_id, **({"labels_dropped": dropped} if dropped else {})}

    def _load(self, image_id: str, path: Path, ext: str, shown: str) -> tuple[Volume, list | None]:
        """The file as a volume, and a DICOM series' slice headers (``None`` for NIfTI/NRRD),
        its memory reserved under the image id first (never call with the lock held: the
        budget may call :meth:`evict_one`)."""
        key = ("datastore", image_id)
        reserve = None if self.budget is None else functools.partial(self.budget.reserve, key)
        limit = self.max_volume_bytes
        try:
            if ext == ZIP_EXT:
                series = load_dicom_zip(path, shown=shown, limit=limit, reserve=reserve)
                return series.volume, series.headers
            return load_upload(path, ext=ext, shown=shown, limit=limit, reserve=reserve), None
        except BaseException:
            self._forget(image_id)
            raise

    def _forget(self, image_id: str) -> None:
        """Release a volume's reservation (its cache entry is already gone or replaced)."""
        if self.budget is not None:
            self.budget.release(("datastore", image_id))

    def _remove_files(self, obj: dict) -> list[str]:
        """Delete an entry's files (lock held); the tags of the labels that went."""
        self.disk_bytes -= self._sizes(obj)
        for path in self._files(obj):
            path.unlink(missing_ok=True)
        return list(obj["labels"])

    def delete_image(self, image_id: str) -> dict:
        """MONAI Label's ``DELETE /datastore/?id=``: the image and all its labels."""
        self.image_file(image_id)
        with self._lock:
            obj = self.objects.pop(image_id)
            tags = self._remove_files(obj)
            self._cache.pop(image_id, None)
            self._save_index()
        self._forget(image_id)
        return {"image": image_id, "labels_deleted": sorted(tags)}

    def evict_one(self) -> bool:
        """Drop the least recently used cached volume (it is read again when next used)."""
        with self._lock:
            if not self._cache:
                return False
            image_id, _ = self._cache.popitem(last=False)
        self._forget(image_id)
        return True

    def _trim(self) -> None:
        while len(self._cache) > self.max_cached:
            self.evict_one()

    def volume(self, image_id: str) -> tuple[Volume, str]:
        """The image as a volume and its version (which changes when the image is replaced)."""
        volume, _, version = self._cached(image_id)
        return volume, version

    def series_headers(self, image_id: str) -> list | None:
        """A DICOM image's slice headers in the volume's k order (``None``: not DICOM)."""
        return self._cached(image_id)[1]

    def _cached(self, image_id: str) -> tuple[Volume, list | None, str]:
        path = self.image_file(image_id)
        with self._lock:
            version = self.objects[image_id]["image"]["info"]["version"]
            hit = self._cache.get(image_id)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(image_id)
                return hit[1], hit[2], version
        volume, headers = self._load(
            image_id, path, self.objects[image_id]["image"]["ext"], image_id
        )
        with self._lock:
            self._cache[image_id] = (version, volume, headers)
        self._trim()
        return volume, headers, version

    def save_label(self, image_id: str, tag: str, src: Path, filename: str | None, info: dict):
        """Store the uploaded label file ``src`` of an image under a tag, byte for byte."""
        self.image_file(image_id)  # the image must exist
        tag = check_tag(tag)
        ext = file_ext(filename, read_head(src), LABEL_EXTS)
        check_single_file(src, ext, shown=base_name(filename) or "the label")
        folder = self.root / "labels" / tag
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            obj = self.objects[image_id]
            old = obj["labels"].get(tag)
            old_path = folder / (obj["image"]["file"] + old["ext"]) if old else None
            old_size = old_path.stat().st_size if old_path and old_path.is_file() else 0
            self._check_quota(src.stat().st_size - old_size)
            if old_path is not None:
                old_path.unlink(missing_ok=True)
            src.replace(folder / (obj["image"]["file"] + ext))
            self.disk_bytes += (folder / (obj["image"]["file"] + ext)).stat().st_size - old_size
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

    def image_download(self, image_id: str) -> tuple[bytes, str]:
        """The stored image file's bytes and the name to send them under."""
        path = self.image_file(image_id)
        return path.read_bytes(), "image" + self.objects[image_id]["image"]["ext"]

    def label_download(self, image_id: str, tag: str, *, seg: bool) -> tuple[bytes, str]:
        """A stored label as it was saved, or (``seg``, a DICOM image only) as a DICOM SEG."""
        path, filename = self.label_file(image_id, tag)
        if not seg:
            return path.read_bytes(), filename
        volume, headers, _ = self._cached(image_id)
        if headers is None:
            raise InputError(f"image {image_id!r} is not DICOM: its labels have no DICOM SEG")
        entry = self.objects[image_id]["labels"][check_tag(tag)]
        label = read_label(
            path, entry["ext"], volume=volume, shown=filename, limit=self.max_volume_bytes
        )
        names = segment_names(label, entry["info"])
        data = seg_bytes(label, headers, segments=names, algorithm=self.algorithm)
        return data, filename.removesuffix(entry["ext"]) + ".dcm"

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
