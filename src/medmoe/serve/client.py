"""A small Python client of the ``medmoe serve`` API, used by the tests and by scripts.

with MedmoeClient("http://127.0.0.1:8000", token=None) as c:  # token: with --auth
    s = c.upload("scan.nii.gz")
    update = c.click(s, [60, 40, 30])          # positive click
    update = c.click(s, [62, 40, 30], positive=False)
    c.download(s, "mask.nii.gz")
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np

from medmoe.errors import InputError, MedmoeError
from medmoe.serve.views import unpack_mask
from medmoe.utils.files import atomic_write


class ServerError(MedmoeError):
    """The server refused a request; ``status`` is its HTTP code."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class MedmoeClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        """``token``: a bearer token (the server token, or one from ``/auth/token``) for a
        server run with ``--auth``; ``http`` replaces the connection (e.g. a FastAPI
        ``TestClient``)."""
        self.http = http if http is not None else httpx.Client(base_url=base_url, timeout=300)
        if token is not None:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> MedmoeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kwargs) -> httpx.Response:
        r = self.http.request(method, url, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ServerError(r.status_code, str(detail))
        return r

    def info(self) -> dict:
        return self._call("GET", "/api/info").json()

    def upload(self, path: str | os.PathLike) -> str:
        """Upload a NIfTI file; returns the session id."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        with open(path, "rb") as fh:
            r = self._call(
                "POST",
                "/api/sessions",
                params={"filename": path.name},
                content=fh.read(),
                headers={"content-type": "application/octet-stream"},
            )
        return r.json()["id"]

    def session(self, sid: str) -> dict:
        return self._call("GET", f"/api/sessions/{sid}").json()

    def slice_png(self, sid: str, view: str, index: int, **window) -> bytes:
        params = {"view": view, "index": index, **window}
        return self._call("GET", f"/api/sessions/{sid}/slice", params=params).content

    def prompt(self, sid: str, *, points=None, labels=None, box=None) -> dict:
        body = {
            "points": None if points is None else np.asarray(points, float).tolist(),
            "labels": None if labels is None else [int(v) for v in labels],
            "box": None if box is None else np.asarray(box, float).tolist(),
        }
        return self._call("POST", f"/api/sessions/{sid}/prompts", json=body).json()

    def click(self, sid: str, ijk, *, positive: bool = True) -> dict:
        return self.prompt(sid, points=[list(ijk)], labels=[1 if positive else 0])

    def box(self, sid: str, box) -> dict:
        return self.prompt(sid, box=box)

    def undo(self, sid: str) -> dict:
        return self._call("POST", f"/api/sessions/{sid}/undo").json()

    def reset(self, sid: str) -> dict:
        return self._call("POST", f"/api/sessions/{sid}/reset").json()

    def close_session(self, sid: str) -> None:
        self._call("DELETE", f"/api/sessions/{sid}")

    def download(self, sid: str, out: str | os.PathLike) -> Path:
        """Save the session's mask (NIfTI, the scan's grid and affine) to ``out``, atomically."""
        data = self._call("GET", f"/api/sessions/{sid}/mask.nii.gz").content
        with atomic_write(out) as tmp:
            tmp.write_bytes(data)
        return Path(out)


def region_mask(update: dict) -> np.ndarray:
    """The boolean mask of a mask update's region ``[lo, hi)``."""
    shape = tuple(h - l for l, h in zip(update["lo"], update["hi"], strict=True))
    return unpack_mask(update["bits"], shape)
