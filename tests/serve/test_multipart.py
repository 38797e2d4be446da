"""The streaming multipart parser: the same parts whatever the chunking, limits while the body
arrives, file parts on disk and little held in memory."""

from __future__ import annotations

import asyncio
import tracemalloc

import numpy as np
import pytest

from medmoe.errors import InputError
from medmoe.serve.monailabel.multipart import encode_form, form_params, parse_form, read_form
from medmoe.serve.store import TooLarge


async def _chunks(body: bytes, size: int):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _read(body, ctype, directory, *, chunk=65536, limit=1 << 30, **kw):
    return asyncio.run(
        read_form(
            _chunks(body, chunk),
            content_type=ctype,
            declared=None,
            directory=directory,
            limit=limit,
            **kw,
        )
    )


def _form(data: bytes):
    return encode_form(
        [
            ("params", None, "application/json", b'{"client_id": "me"}'),
            ("file", "/home/me/scan.nii.gz", "application/gzip", data),
        ]
    )


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536, 1 << 30])
def test_parts_are_the_same_whatever_the_chunking(chunk, tmp_path):
    rng = np.random.default_rng(0)
    data = rng.bytes(3 << 20 if chunk > 1 else 20_000) + b"\r\n--not-the-boundary\r\n"
    ctype, body = _form(data)
    parts = _read(body, ctype, tmp_path, chunk=chunk)
    assert form_params(parts) == {"client_id": "me"}
    assert parts["file"].filename == "/home/me/scan.nii.gz" and parts["file"].data is None
    assert parts["file"].path.read_bytes() == data and parts["file"].size == len(data)
    assert parts["file"].read_head(5) == data[:5]


def test_a_delimiter_split_at_every_offset(tmp_path):
    ctype, body = _form(b"abc\r\n-")  # a near-delimiter inside the data
    for cut in range(1, len(body)):

        async def two(cut=cut):
            yield body[:cut]
            yield body[cut:]

        parts = asyncio.run(
            read_form(two(), content_type=ctype, declared=None, directory=tmp_path, limit=10**6)
        )
        assert parts["file"].path.read_bytes() == b"abc\r\n-", cut


def test_the_in_memory_parser_agrees(tmp_path):
    ctype, body = _form(b"x" * 1000)
    parts = parse_form(body, ctype)
    assert parts["file"].data == b"x" * 1000 and parts["params"].text() == '{"client_id": "me"}'


def test_preamble_and_epilogue_are_ignored(tmp_path):
    ctype, body = _form(b"data")
    parts = _read(b"preamble\r\n" + body + b"epilogue", ctype, tmp_path)
    assert parts["file"].path.read_bytes() == b"data"


def test_limits_while_the_body_arrives(tmp_path):
    ctype, body = _form(bytes(10_000))
    with pytest.raises(TooLarge, match="over the limit of 5000 bytes"):
        _read(body, ctype, tmp_path, chunk=1000, limit=5000)
    iterated = []

    async def stream():
        iterated.append(1)
        yield body

    with pytest.raises(TooLarge):  # a declared length over the limit: nothing is read
        asyncio.run(
            read_form(
                stream(), content_type=ctype, declared="10000000", directory=tmp_path, limit=5000
            )
        )
    assert iterated == []
    big_field = encode_form([("params", None, "application/json", b" " * 2000)])
    with pytest.raises(TooLarge, match="'params' is over 1000 bytes"):
        _read(big_field[1], big_field[0], tmp_path, field_limit=1000)


@pytest.mark.parametrize(
    "ctype, body, message",
    [
        ("text/plain", b"", "expected a multipart/form-data body"),
        ("multipart/form-data", b"", "no valid boundary"),
        ("multipart/form-data; boundary=b", b"no delimiter here", "no boundary line"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--", "no field name"),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\ncut', "cut short"),
        ("multipart/form-data; boundary=b", b"--bXX", "malformed"),
    ],
)  # fmt: skip
def test_malformed_bodies(ctype, body, message, tmp_path):
    with pytest.raises(InputError, match=message):
        _read(body, ctype, tmp_path)


def test_too_many_parts(tmp_path):
    ctype, body = encode_form([(f"f{i}", None, "text/plain", b"x") for i in range(17)])
    with pytest.raises(InputError, match="at most 16 parts"):
        _read(body, ctype, tmp_path)


def test_the_last_part_of_a_name_wins_and_the_earlier_file_goes(tmp_path):
    ctype, body = encode_form([("file", "a.nii", "x", b"first"), ("file", "b.nii", "x", b"second")])
    parts = _read(body, ctype, tmp_path)
    assert parts["file"].path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == [parts["file"].path.name]


def test_a_large_upload_is_never_held_in_memory(tmp_path):
    ctype, body = _form(bytes(50 << 20))
    tracemalloc.start()
    try:
        parts = _read(body, ctype, tmp_path, chunk=65536)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parts["file"].size == 50 << 20
    assert peak < 5 << 20, peak  # the 50 MB body itself is not traced: it was built before
