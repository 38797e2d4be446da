"""``multipart/form-data`` in and out, for the MONAI Label API (RFC 7578).

MONAI Label's client sends ``params`` as a form field and files as parts, and reads replies of
the same kind. FastAPI's ``Form``/``File`` would need the python-multipart package; these few
functions keep the serve extra at FastAPI, uvicorn and httpx. Bodies are read with a byte limit
(``read_body``) before they are parsed, so an oversized upload is refused while it arrives.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from medmoe.errors import InputError
from medmoe.serve.store import TooLarge

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PARAM = re.compile(r';\s*([A-Za-z*]+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None for a plain form field
    content_type: str | None
    data: bytes

    def text(self) -> str:
        return self.data.decode("utf-8", errors="strict")


async def read_body(stream: AsyncIterator[bytes], *, limit: int, declared: str | None) -> bytes:
    """The whole request body, refused with :class:`TooLarge` once it passes ``limit`` bytes."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def parse_form(body: bytes, content_type: str | None) -> dict[str, Part]:
    """The parts of a ``multipart/form-data`` body by field name (the last one wins)."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise InputError("expected a multipart/form-data body")
    found = _BOUNDARY.search(content_type)
    if not found:
        raise InputError("the multipart body has no boundary")
    delimiter = b"--" + found.group(1).encode("latin-1")
    parts: dict[str, Part] = {}
    pos = body.find(delimiter)
    if pos < 0:
        raise InputError("the multipart body is malformed (no boundary line)")
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":
            return parts
        if body[pos : pos + 2] != b"\r\n":
            raise InputError("the multipart body is malformed")
        end_head = body.find(b"\r\n\r\n", pos + 2)
        nxt = body.find(b"\r\n" + delimiter, pos + 2)
        if end_head < 0 or nxt < 0 or end_head > nxt:
            raise InputError("the multipart body is malformed (a part is cut short)")
        head = _headers(body[pos + 2 : end_head])
        disposition = dict(
            (k.lower(), v) for k, v in _PARAM.findall(head.get("content-disposition", ""))
        )
        if "name" not in disposition:
            raise InputError("a multipart part has no field name")
        parts[disposition["name"]] = Part(
            name=disposition["name"],
            filename=disposition.get("filename"),
            content_type=head.get("content-type"),
            data=body[end_head + 4 : nxt],
        )
        pos = nxt + 2


def form_params(parts: dict[str, Part]) -> dict:
    """The ``params`` field, a JSON object (``{}`` when absent)."""
    part = parts.get("params")
    if part is None or not part.data.strip():
        return {}
    try:
        value = json.loads(part.text())
    except (ValueError, UnicodeDecodeError):
        raise InputError("params must be a JSON object") from None
    if not isinstance(value, dict):
        raise InputError("params must be a JSON object")
    return value


def encode_form(fields: list[tuple[str, str | None, str, bytes]]) -> tuple[str, bytes]:
    """``(content_type, body)`` of a multipart reply; each field is
    ``(name, filename or None, content type, data)``."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, filename, ctype, data in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\nContent-Type: {ctype}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)
