"""The DICOMweb proxy OHIF's MONAI Label mode reads through: ``/proxy/dicom/qido/...`` and
``/proxy/dicom/wado/...`` (MONAI Label's ``/proxy/dicom/{op}/{path}``), both to the DICOMweb
root of ``--studies``.

Only GET is forwarded, with the query string and the ``Accept`` header and nothing else (no
cookie, no ``Authorization``: the server's own token never reaches the DICOMweb server); the
reply's status, ``Content-Type`` and body come back, streamed. The path is checked before it is
joined to the root: segments of letters, digits, ``.``, ``-`` and ``_`` only, none of them ``.``
or ``..``, so a request cannot leave the DICOMweb root. With ``--auth`` the bearer token is
needed as on every route, and the role to read the datastore.
"""

from __future__ import annotations

import re

import httpx
from fastapi import APIRouter, HTTPException, Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from medmoe.errors import InputError
from medmoe.serve.guard import require
from medmoe.serve.monailabel.dicomweb import Upstream

SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
OPS = ("qido", "wado")


def check_path(path: str) -> str:
    parts = path.split("/")
    if len(parts) > 12 or not all(SEGMENT.match(p) and p not in (".", "..") for p in parts):
        raise InputError("the DICOMweb path must be /-separated UIDs and names only")
    return path


def proxy_routes(router: APIRouter, studies: str | None, *, timeout_s: float = 60.0) -> None:
    @router.get("/proxy/dicom/{op}/{path:path}", include_in_schema=False)
    async def proxy_dicom(request: Request, op: str, path: str) -> StreamingResponse:
        """QIDO-RS and WADO-RS of the ``--studies`` server, for OHIF."""
        require(request, "read_datastore")
        if op not in OPS:
            raise HTTPException(404, f"no DICOMweb proxy {op!r} (only {', '.join(OPS)})")
        if studies is None:
            raise HTTPException(404, "this server has no DICOMweb datastore (--studies URL)")
        url = f"{studies.rstrip('/')}/{check_path(path)}"
        accept = request.headers.get("accept", "application/dicom+json")
        client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        try:
            upstream = await client.send(
                client.build_request(
                    "GET", url, params=request.query_params, headers={"Accept": accept[:512]}
                ),
                stream=True,
            )
        except httpx.HTTPError:
            await client.aclose()
            raise Upstream("the DICOMweb server is unreachable") from None

        async def close() -> None:
            await upstream.aclose()
            await client.aclose()

        media = upstream.headers.get("content-type")
        return StreamingResponse(
            upstream.aiter_bytes(),
            status_code=upstream.status_code,
            media_type=media,
            background=BackgroundTask(close),
        )
