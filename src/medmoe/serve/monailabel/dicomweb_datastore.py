"""MONAI Label's datastore over a DICOMweb server (``medmoe serve --studies URL``), as MONAI
Label's own ``--studies`` datastore: the image id is the SeriesInstanceUID.

QIDO-RS lists the image series (every modality but SEG, RTSTRUCT, SR, PR, KO and others
without pixels); the SEG series on the server that reference one of them are its labels, each
under the tag written in its ContentDescription (``medmoe tag TAG``; ``final`` when absent).
WADO-RS retrieves a series the first time it is used into ``<data_dir>/dicomweb/<hash>/`` (a
hash of the UID, never the UID itself, as a path), within ``--datastore-quota-mb`` (the
least recently used series go first); decoded volumes are cached in memory within the server's
budget. A label saved (``PUT /datastore/label``) is read on the image's grid, made a DICOM SEG
that references the series and stored back through STOW-RS. The images themselves belong to
the DICOMweb server: adding or deleting them here is refused.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from medmoe.data import Volume
from medmoe.data.dicom import read_series
from medmoe.data.dicom_seg import Algorithm, seg_dataset
from medmoe.data.io import nifti_bytes
from medmoe.errors import InputError
from medmoe.serve.budget import MemoryBudget
from medmoe.serve.monailabel import dicomweb as dw
from medmoe.serve.monailabel.files import (
    DEFAULT_TAG,
    LABEL_EXTS,
    base_name,
    check_single_file,
    check_tag,
    file_ext,
    read_head,
)
from medmoe.serve.monailabel.labelfile import read_label, segment_names
from medmoe.serve.store import NotFound

NO_PIXELS = ("SEG", "RTSTRUCT", "SR", "PR", "KO", "DOC", "REG", "RWV", "PLAN")
TAG_PREFIX = "medmoe tag "


class ReadOnly(InputError):
    """The DICOMweb server owns the images (HTTP 400)."""


class DicomWebDatastore:
    def __init__(
        self,
        *,
        client: dw.DicomWebClient,
        root: Path,
        max_cached: int = 8,
        max_volume_bytes: int = 1 << 30,
        quota_bytes: int = 10 << 30,
        budget: MemoryBudget | None = None,
        algorithm: Algorithm = Algorithm(model="SAM-Med3D"),  # noqa: B008 (frozen)
    ) -> None:
        self.client = client
        self.root = Path(root).resolve()
        self.max_cached = max_cached
        self.max_volume_bytes = max_volume_bytes
        self.quota_bytes = quota_bytes
        self.budget = budget
        self.algorithm = algorithm
        self._lock = threading.Lock()
        self._cache: OrderedDict = OrderedDict()  # uid -> (volume, headers)
        self._references: dict[str, tuple[str | None, str]] = {}  # SEG uid -> (image uid, tag)
        self.root.mkdir(parents=True, exist_ok=True)
        for part in self.root.glob(".part-*"):  # retrievals cut short by a crash
            shutil.rmtree(part, ignore_errors=True)
        if budget is not None:
            budget.add_evictor(self.evict_one)

    # --- the listing ---------------------------------------------------------------------------
    def _series(self) -> tuple[dict[str, dict], list[dict]]:
        """``({image uid: QIDO object}, [SEG QIDO objects])``."""
        images, segs = {}, []
        for item in self.client.search_series():
            uid, modality = dw.value(item, dw.SERIES_UID), dw.value(item, dw.MODALITY, "")
            if not isinstance(uid, str) or not dw.UID.match(uid):
                continue
            if modality == "SEG":
                segs.append(item)
            elif modality not in NO_PIXELS:
                images[uid] = item
        return images, segs

    def _reference(self, seg: dict) -> tuple[str | None, str]:
        """The image series a SEG series references, and its tag (cached: SEGs never change)."""
        uid = dw.value(seg, dw.SERIES_UID)
        if uid not in self._references:
            meta = self.client.series_metadata(dw.value(seg, dw.STUDY_UID, ""), uid)
            first = meta[0] if meta else {}
            refs = dw.value(first, dw.REFERENCED_SERIES, {}) or {}
            described = str(dw.value(first, dw.CONTENT_DESCRIPTION, "") or "")
            tag = described.removeprefix(TAG_PREFIX) if described.startswith(TAG_PREFIX) else ""
            self._references[uid] = (dw.value(refs, dw.SERIES_UID), tag or DEFAULT_TAG)
        return self._references[uid]

    def _labels(self, segs: list[dict]) -> dict[str, dict[str, dict]]:
        """``{image uid: {tag: label entry}}``, the newest SEG of each tag winning."""
        out: dict[str, dict[str, dict]] = {}
        for seg in sorted(segs, key=lambda s: str(dw.value(s, dw.SERIES_DATE, "") or "")):
            image, tag = self._reference(seg)
            if image is not None:
                info = {
                    "series": dw.value(seg, dw.SERIES_UID),
                    "study": dw.value(seg, dw.STUDY_UID),
                }
                out.setdefault(image, {})[tag] = {"ext": ".dcm", "info": info}
        return out

    def to_json(self) -> dict:
        images, segs = self._series()
        labels = self._labels(segs)
        objects = {
            uid: {
                "image": {
                    "ext": ".dcm",
                    "info": {
                        "StudyInstanceUID": dw.value(item, dw.STUDY_UID),
                        "SeriesDescription": dw.value(item, dw.DESCRIPTION),
                        "Modality": dw.value(item, dw.MODALITY),
                    },
                },
                "labels": labels.get(uid, {}),
            }
            for uid, item in images.items()
        }
        return {"name": "medmoe", "description": f"DICOMweb {self.client.url}", "objects": objects}

    def status(self) -> dict:
        objects = self.to_json()["objects"]
        tags: dict[str, int] = {}
        for obj in objects.values():
            for tag in obj["labels"]:
                tags[tag] = tags.get(tag, 0) + 1
        done = sum(1 for o in objects.values() if DEFAULT_TAG in o["labels"])
        return {"total": len(objects), "completed": done, "label_tags": tags}

    def _study(self, uid: str) -> str:
        found = self.client.search_series(SeriesInstanceUID=dw.check_uid(uid, "image id"))
        study = dw.value(found[0], dw.STUDY_UID) if found else None
        if not isinstance(study, str):
            raise NotFound(f"no series {uid} on the DICOMweb server")
        return study

    # --- images ---------------------------------------------------------------------------------
    def _folder(self, uid: str) -> Path:
        return self.root / hashlib.sha256(uid.encode("ascii")).hexdigest()[:32]

    def _retrieve(self, uid: str) -> Path:
        """The series' folder in the on-disk cache, retrieved (WADO-RS) when absent."""
        folder = self._folder(uid)
        if folder.is_dir():
            folder.touch()  # its mtime orders the cache's eviction
            return folder
        part = self.root / f".part-{uuid.uuid4().hex}"
        try:
            count = self.client.retrieve_series(
                self._study(uid), uid, into=part, limit=self.max_volume_bytes
            )
            if count == 0:
                raise NotFound(f"series {uid} has no instances on the DICOMweb server")
            part.rename(folder)
        finally:
            shutil.rmtree(part, ignore_errors=True)
        self._trim_disk(keep=folder)
        return folder

    def _trim_disk(self, keep: Path) -> None:
        folders = sorted(
            (p for p in self.root.iterdir() if p.is_dir() and p != keep and len(p.name) == 32),
            key=lambda p: p.stat().st_mtime,
        )
        size = sum(f.stat().st_size for p in self.root.iterdir() for f in p.rglob("*.dcm"))
        while size > self.quota_bytes and folders:
            old = folders.pop(0)
            size -= sum(f.stat().st_size for f in old.rglob("*.dcm"))
            shutil.rmtree(old, ignore_errors=True)

    def _cached(self, uid: str) -> tuple[Volume, list]:
        dw.check_uid(uid, "image id")
        with self._lock:
            if uid in self._cache:
                self._cache.move_to_end(uid)
                return self._cache[uid]
        folder = self._retrieve(uid)
        key = ("dicomweb", uid)
        if self.budget is not None:
            raw = sum(f.stat().st_size for f in folder.glob("*.dcm"))
            self.budget.reserve(key, 2 * raw)  # a float32 of 16-bit pixels
        try:
            series = read_series(folder, series=uid, max_bytes=self.max_volume_bytes)
        except InputError as err:
            self._forget(uid)
            raise type(err)(str(err).replace(str(folder), f"series {uid}")) from None
        if self.budget is not None:
            self.budget.reserve(key, series.volume.array.nbytes)
        with self._lock:
            self._cache[uid] = (series.volume, series.headers)
        while len(self._cache) > self.max_cached:
            self.evict_one()
        return series.volume, series.headers

    def _forget(self, uid: str) -> None:
        if self.budget is not None:
            self.budget.release(("dicomweb", uid))

    def evict_one(self) -> bool:
        with self._lock:
            if not self._cache:
                return False
            uid, _ = self._cache.popitem(last=False)
        self._forget(uid)
        return True

    def volume(self, image_id: str) -> tuple[Volume, str]:
        """The series as a volume, and its version (the UID: a series' pixels never change)."""
        return self._cached(image_id)[0], image_id

    def series_headers(self, image_id: str) -> list:
        return self._cached(image_id)[1]

    def image_download(self, image_id: str) -> tuple[bytes, str]:
        """The series as NIfTI (as MONAI Label's DICOMweb datastore converts it)."""
        volume = self._cached(image_id)[0]
        return nifti_bytes(volume.array, volume.affine), "image.nii.gz"

    def add_image(self, *args, **kwargs) -> dict:
        raise ReadOnly("the images come from the DICOMweb server (--studies): store them there")

    def delete_image(self, image_id: str) -> dict:
        raise ReadOnly("the images belong to the DICOMweb server (--studies): delete them there")

    # --- labels ---------------------------------------------------------------------------------
    def save_label(self, image_id: str, tag: str, src: Path, filename: str | None, info: dict):
        """The uploaded label, read on the series' grid, as a DICOM SEG through STOW-RS."""
        tag = check_tag(tag)
        volume, headers = self._cached(image_id)
        ext = file_ext(filename, read_head(src), LABEL_EXTS)
        shown = base_name(filename) or "the label"
        check_single_file(src, ext, shown=shown)
        named = src.with_name(f"label{ext}")  # the readers go by the file's extension
        src.rename(named)
        label = read_label(named, ext, volume=volume, shown=shown, limit=self.max_volume_bytes)
        seg = seg_dataset(
            label, headers, segments=segment_names(label, info), algorithm=self.algorithm
        )
        seg.ContentDescription = f"{TAG_PREFIX}{tag}"
        seg.SeriesDate, seg.SeriesTime = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
        self.client.store(_part10(seg))
        return image_id

    def label_download(self, image_id: str, tag: str, *, seg: bool = True) -> tuple[bytes, str]:
        """The newest SEG of the series under ``tag``, as stored on the DICOMweb server."""
        tag = check_tag(tag)
        dw.check_uid(image_id, "image id")
        label = self._labels(self._series()[1]).get(image_id, {}).get(tag)
        if label is None:
            raise NotFound(f"no label {tag!r} for image {image_id!r}")
        study, series = label["info"]["study"], label["info"]["series"]
        scratch = self.root / f".part-{uuid.uuid4().hex}"
        try:
            self.client.retrieve_series(study, series, into=scratch, limit=self.max_volume_bytes)
            first = sorted(scratch.glob("*.dcm"))[0]
            return first.read_bytes(), f"{series}.dcm"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        self.client.close()


def _part10(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
