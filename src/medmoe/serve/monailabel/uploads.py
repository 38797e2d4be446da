"""Multipart uploads of the MONAI Label API, streamed to disk under ``<data_dir>/uploads/``.

Each request gets a scratch folder of its own (a random id, never a client's name), holds one of
the server's upload slots while its body arrives, and its scratch folder is removed when the
request ends, whatever happened; the stores *move* the files they keep out of it.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path

from fastapi import Request

from medmoe.serve.budget import UploadSlots
from medmoe.serve.monailabel.multipart import read_form

PARAMS_LIMIT = 2 << 20  # an /infer body: its params field (1 MiB at most) and the framing


class Uploads:
    def __init__(self, *, root: Path, limit: int, slots: UploadSlots) -> None:
        self.root = Path(root).resolve()
        self.limit = limit  # bytes of one request body, multipart framing included
        self.slots = slots
        shutil.rmtree(self.root, ignore_errors=True)  # leftovers of an earlier run
        self.root.mkdir(parents=True)

    @contextlib.asynccontextmanager
    async def form(self, request: Request, *, params_only: bool = False):
        """The request's parts; file parts lie in a scratch folder deleted on exit.
        ``params_only`` (``/infer``: a few clicks of JSON) takes no upload slot, so that clicks
        are never refused while scans arrive, and allows :data:`PARAMS_LIMIT` bytes only."""
        slot = contextlib.nullcontext() if params_only else self.slots.slot()
        with slot:
            directory = self.root / uuid.uuid4().hex
            directory.mkdir()
            try:
                yield await read_form(
                    request.stream(),
                    content_type=request.headers.get("content-type"),
                    declared=request.headers.get("content-length"),
                    directory=directory,
                    limit=PARAMS_LIMIT if params_only else self.limit,
                )
            finally:
                shutil.rmtree(directory, ignore_errors=True)
