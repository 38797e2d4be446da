"""A small request body read whole, with a byte limit (the viewer's prompts, MONAI Label's login
form); large bodies are streamed to disk instead (:mod:`medmoe.serve.store`,
:mod:`medmoe.serve.monailabel.uploads`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from medmoe.serve.store import TooLarge


async def read_body(stream: AsyncIterator[bytes], *, limit: int, declared: str | None) -> bytes:
    """The whole request body, refused with :class:`TooLarge` once it passes ``limit`` bytes
    (for small bodies only: the login form, a prompt)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the upload is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
