"""A DICOMweb server's QIDO-RS, WADO-RS and STOW-RS (DICOM PS3.18), over httpx.

Only what the datastore of ``medmoe serve --studies URL`` needs: list series, read a series'
metadata, retrieve a series' instances (``multipart/related``, parsed here) and store one
instance. A server that cannot be reached or answers with an error is :class:`Upstream` (502):
one line naming the request, never the server's reply body. Retrievals are capped in bytes
while they arrive. UIDs are checked before they are put into a URL.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx

from medmoe.errors import InputError, MedmoeError, first_line
from medmoe.serve.store import TooLarge

DICOM_JSON = "application/dicom+json"
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# DICOM JSON tags (PS3.18 F.2) used here
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
MODALITY, DESCRIPTION, SERIES_DATE = "00080060", "0008103E", "00080021"
N_INSTANCES, CONTENT_DESCRIPTION, REFERENCED_SERIES = "00201209", "00700081", "00081115"


class Upstream(MedmoeError):
    """The DICOMweb server could not be reached, or refused the request (HTTP 502)."""


def check_uid(value: str, what: str = "UID") -> str:
    if not isinstance(value, str) or len(value) > 64 or not UID.match(value):
        raise InputError(f"{what} {value[:70]!r} is not a DICOM UID (digits and dots)")
    return value


def value(item: dict, tag: str, default=None):
    """The first value of ``tag`` in a DICOM JSON object (``default`` when absent)."""
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else default


def split_related(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a ``multipart/related`` body (RFC 2387), headers dropped."""
    found = re.search(r'boundary="?([^";]+)"?', content_type or "", re.IGNORECASE)
    if not found or not content_type.lower().startswith("multipart/related"):
        raise Upstream(f"the DICOMweb server answered {content_type[:60]!r}, not multipart/related")
    delimiter = b"--" + found.group(1).encode("latin-1")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise Upstream("the DICOMweb server's multipart reply is malformed")
        parts.append(data.removesuffix(b"\r\n"))
    return parts


def related_body(instances: list[bytes]) -> tuple[str, bytes]:
    """``(content_type, body)`` of a STOW-RS request of DICOM Part 10 files."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for data in instances:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', bytes(out)


class DicomWebClient:
    """QIDO-RS, WADO-RS and STOW-RS against the DICOMweb root ``url`` (e.g. Orthanc's
    ``http://HOST:8042/dicom-web``)."""

    def __init__(self, *, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def _get(self, path: str, *, accept: str, params: dict | None = None) -> httpx.Response:
        try:
            reply = self.http.get(self.url + path, params=params, headers={"Accept": accept})
        except httpx.HTTPError as err:
            raise Upstream(f"the DICOMweb server is unreachable ({first_line(err)})") from None
        if reply.status_code >= 400:
            raise Upstream(f"the DICOMweb server answered {reply.status_code} to GET {path}")
        return reply

    def search_series(self, **params: str) -> list[dict]:
        """QIDO-RS ``/series``: DICOM JSON objects, one per series."""
        reply = self._get("/series", accept=DICOM_JSON, params=params)
        if reply.status_code == 204 or not reply.content:
            return []
        try:
            items = reply.json()
        except ValueError:
            raise Upstream("the DICOMweb server's QIDO reply is not JSON") from None
        if not isinstance(items, list):
            raise Upstream("the DICOMweb server's QIDO reply is not a list")
        return [i for i in items if isinstance(i, dict)]

    def series_metadata(self, study: str, series: str) -> list[dict]:
        """WADO-RS ``/studies/{study}/series/{series}/metadata``: one object per instance."""
        path = f"/studies/{check_uid(study)}/series/{check_uid(series)}/metadata"
        try:
            items = self._get(path, accept=DICOM_JSON).json()
        except ValueError:
            raise Upstream("the DICOMweb server's metadata reply is not JSON") from None
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def retrieve_series(self, study: str, series: str, *, into: Path, limit: int) -> int:
        """WADO-RS: the series' instances written to ``into/NNNNN.dcm``; their count. More
        than ``limit`` bytes in the reply is :class:`TooLarge`."""
        path = f"/studies/{check_uid(study)}/series/{check_uid(series)}"
        accept = 'multipart/related; type="application/dicom"'
        chunks, size = [], 0
        try:
            with self.http.stream("GET", self.url + path, headers={"Accept": accept}) as reply:
                if reply.status_code >= 400:
                    raise Upstream(
                        f"the DICOMweb server answered {reply.status_code} to GET {path}"
                    )
                for chunk in reply.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(
                            f"series {series} is over {limit >> 20} MiB (--max-volume-mb)"
                        )
                    chunks.append(chunk)
                content_type = reply.headers.get("content-type", "")
        except httpx.HTTPError as err:
            raise Upstream(f"the DICOMweb server is unreachable ({first_line(err)})") from None
        parts = split_related(b"".join(chunks), content_type)
        into.mkdir(parents=True, exist_ok=True)
        for n, data in enumerate(parts):
            (into / f"{n:05d}.dcm").write_bytes(data)
        return len(parts)

    def store(self, instance: bytes) -> None:
        """STOW-RS: one DICOM Part 10 file to ``/studies``."""
        content_type, body = related_body([instance])
        headers = {"Content-Type": content_type, "Accept": DICOM_JSON}
        try:
            reply = self.http.post(self.url + "/studies", content=body, headers=headers)
        except httpx.HTTPError as err:
            raise Upstream(f"the DICOMweb server is unreachable ({first_line(err)})") from None
        if reply.status_code >= 400:
            raise Upstream(f"the DICOMweb server answered {reply.status_code} to STOW-RS")

    def close(self) -> None:
        self.http.close()
