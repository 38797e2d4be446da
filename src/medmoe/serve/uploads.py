"""Multipart uploads of the MONAI Label API, streamed to disk under ``<data_dir>/uploads/``.

Each request gets a scratch folder of its own (a random id, never a client's name), holds one of
the server's upload slots while its body arrives, and its scratch folder is removed when the
request ends, whatever happened; the stores *move* the files they keep out of it.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request

from medmoe.serve.budget import UploadSlots
from medmoe.serve.multipart import Part, read_form


class Uploads:
    def __init__(self, *, root: Path, limit: int, slots: UploadSlots) -> None:
        self.root = Path(root).resolve()
        self.limit = limit  # bytes of one request body, multipart framing included
        self.slots = slots
        shutil.rmtree(self.root, ignore_errors=True)  # leftovers of an earlier run
        self.root.mkdir(parents=True)

    @contextlib.asynccontextmanager
    async def form(self, request: Request) -> AsyncIterator[dict[str, Part]]:
        """The request's parts; file parts lie in a scratch folder deleted on exit."""
        with self.slots.slot():
            directory = self.root / uuid.uuid4().hex
            directory.mkdir()
            try:
                yield await read_form(
                    request.stream(),
                    content_type=request.headers.get("content-type"),
                    declared=request.headers.get("content-length"),
                    directory=directory,
                    limit=self.limit,
                )
            finally:
                shutil.rmtree(directory, ignore_errors=True)
