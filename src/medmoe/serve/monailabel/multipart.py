"""``multipart/form-data`` in and out, for the MONAI Label API (RFC 7578).

MONAI Label's client sends ``params`` as a form field and files as parts, and reads replies of
the same kind. FastAPI's ``Form``/``File`` would need the python-multipart package; these few
functions keep the serve extra at FastAPI, uvicorn and httpx. :func:`read_form` parses a body
as it arrives (:class:`FormParser`, a push parser), with a byte limit, and streams file parts to
disk, so neither an oversized nor a large upload is ever held in memory.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from medmoe.errors import InputError
from medmoe.serve import jsonlimits
from medmoe.serve.store import TooLarge

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PARAM = re.compile(r';\s*([A-Za-z*]+)="((?:[^"\\]|\\.)*)"')
MAX_HEADER_BYTES = 16 << 10  # the headers of one part


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None for a plain form field
    content_type: str | None
    data: bytes | None  # plain fields: in memory (at most ``field_limit`` bytes)
    path: Path | None  # file parts: the part's bytes, streamed to this file
    size: int

    def text(self) -> str:
        try:
            return (self.data or b"").decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise InputError(f"form field {self.name!r} is not UTF-8 text") from None

    def read_head(self, n: int) -> bytes:
        """The first ``n`` bytes, for sniffing magic numbers."""
        if self.path is None:
            return (self.data or b"")[:n]
        with open(self.path, "rb") as fh:
            return fh.read(n)


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _boundary(content_type: str | None) -> bytes:
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise InputError("expected a multipart/form-data body")
    found = _BOUNDARY.search(content_type)
    if not found or len(found.group(1)) > 200:
        raise InputError("the multipart body has no valid boundary")
    return found.group(1).encode("latin-1")


class FormParser:
    """A push parser: :meth:`feed` it the body's chunks as they arrive, then :meth:`close`.

    Only the bytes that may still hold the start of a delimiter are kept between chunks; file
    parts go to ``directory/part-N`` as they arrive. The body is read as if preceded by CRLF,
    so every delimiter, the first included, is ``CRLF--boundary`` (RFC 2046).
    """

    def __init__(
        self, *, boundary: bytes, directory: Path | None, field_limit: int, max_parts: int
    ) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.directory = directory
        self.field_limit = field_limit
        self.max_parts = max_parts
        self.parts: dict[str, Part] = {}
        self._buf = bytearray(b"\r\n")
        self._state = "preamble"
        self._count = 0
        self._head: dict[str, str] = {}
        self._out = None  # an open file, or a bytearray for a plain field
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while self._step():
            pass

    def _step(self) -> bool:
        """Advance one state if the buffer allows; whether it did."""
        buf, delim = self._buf, self.delimiter
        if self._state == "preamble":
            at = buf.find(delim)
            if at < 0:
                del buf[: max(0, len(buf) - len(delim) + 1)]
                return False
            del buf[: at + len(delim)]
            self._state = "delimited"
        elif self._state == "delimited":  # after a delimiter: "--" ends the body, CRLF a part
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self._state = "done"
            elif buf[:2] != b"\r\n":
                raise InputError("the multipart body is malformed")
            else:
                self._state = "headers"
        elif self._state == "headers":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise InputError("a multipart part's headers are too long")
                return False
            self._start_part(_headers(bytes(buf[2:end])))
            del buf[: end + 4]
            self._state = "body"
        elif self._state == "body":
            at = buf.find(delim)
            keep = at if at >= 0 else max(0, len(buf) - len(delim) + 1)
            self._write(bytes(buf[:keep]))
            if at < 0:
                del buf[:keep]
                return False
            del buf[: at + len(delim)]
            self._end_part()
            self._state = "delimited"
        else:  # done: the epilogue is ignored
            buf.clear()
            return False
        return True

    def _start_part(self, head: dict[str, str]) -> None:
        self._count += 1
        if self._count > self.max_parts:
            raise InputError(f"a multipart body may have at most {self.max_parts} parts")
        disposition = dict(
            (k.lower(), v) for k, v in _PARAM.findall(head.get("content-disposition", ""))
        )
        if "name" not in disposition:
            raise InputError("a multipart part has no field name")
        self._head = {**head, **{"_" + k: v for k, v in disposition.items()}}
        self._size = 0
        if "filename" in disposition and self.directory is not None:
            self._out = open(self.directory / f"part-{self._count}", "wb")  # noqa: SIM115
        else:
            self._out = bytearray()

    def _write(self, data: bytes) -> None:
        self._size += len(data)
        if isinstance(self._out, bytearray):
            if self._size > self.field_limit and "_filename" not in self._head:
                name = self._head["_name"]
                raise TooLarge(f"form field {name!r} is over {self.field_limit} bytes")
            self._out += data
        else:
            self._out.write(data)

    def _end_part(self) -> None:
        head, out = self._head, self._out
        name = head["_name"]
        path = None
        if isinstance(out, bytearray):
            data = bytes(out)
        else:
            out.close()
            data, path = None, Path(out.name)
        old = self.parts.get(name)
        if old is not None and old.path is not None and old.path != path:
            old.path.unlink(missing_ok=True)  # the last part of a name wins
        self.parts[name] = Part(
            name=name,
            filename=head.get("_filename"),
            content_type=head.get("content-type"),
            data=data,
            path=path,
            size=self._size,
        )
        self._out = None

    def discard(self) -> None:
        """Close the file being written, if any (the caller removes the directory)."""
        if self._out is not None and not isinstance(self._out, bytearray):
            self._out.close()
        self._out = None

    def close(self) -> dict[str, Part]:
        """The parts; :class:`InputError` if the body ended before its closing delimiter."""
        self.discard()
        if self._state != "done":
            if self._state == "preamble":
                raise InputError("the multipart body is malformed (no boundary line)")
            raise InputError("the multipart body is malformed (a part is cut short)")
        return self.parts


async def read_form(
    stream: AsyncIterator[bytes],
    *,
    content_type: str | None,
    declared: str | None,
    directory: Path,
    limit: int,
    field_limit: int = 1 << 20,
    max_parts: int = 16,
) -> dict[str, Part]:
    """Parse a ``multipart/form-data`` body as it arrives: plain fields in memory, file parts
    streamed to files in ``directory`` (the caller's, who removes it). Over ``limit`` bytes in
    all (or declared so) is :class:`TooLarge`, malformed framing :class:`InputError`."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is over the limit of {limit} bytes")
    parser = FormParser(
        boundary=_boundary(content_type),
        directory=directory,
        field_limit=field_limit,
        max_parts=max_parts,
    )
    size = 0
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the upload is over the limit of {limit} bytes")
            parser.feed(chunk)
    except BaseException:
        parser.discard()
        raise
    return parser.close()


def parse_form(body: bytes, content_type: str | None) -> dict[str, Part]:
    """The parts of a whole ``multipart/form-data`` body held in memory, every part in memory
    (for small bodies and tests; the server uses :func:`read_form`)."""
    parser = FormParser(
        boundary=_boundary(content_type), directory=None, field_limit=len(body), max_parts=1 << 16
    )
    parser.feed(body)
    return parser.close()


def form_params(parts: dict[str, Part]) -> dict:
    """The ``params`` field, a JSON object (``{}`` when absent)."""
    part = parts.get("params")
    if part is None or not part.data.strip():
        return {}
    value = jsonlimits.loads(part.text())
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
