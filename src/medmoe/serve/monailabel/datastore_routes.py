"""MONAI Label's ``/datastore/`` and ``/session/`` endpoints over :mod:`medmoe.serve.datastore`.

Uploads arrive through :class:`medmoe.serve.uploads.Uploads` (streamed to disk, one slot each).
With ``--auth``, reading the datastore and writing to it need the role ``annotator``,
``reviewer`` or ``admin``, and deleting needs ``admin`` (MONAI Label's role names); temporary
images (``/session/``) are open to every user, as inference is.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from medmoe.errors import InputError
from medmoe.serve.guard import require
from medmoe.serve.monailabel.datastore import Datastore
from medmoe.serve.monailabel.files import DEFAULT_TAG, base_name
from medmoe.serve.monailabel.multipart import Part, form_params
from medmoe.serve.monailabel.temp_images import TempImages
from medmoe.serve.monailabel.uploads import Uploads

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".zip")


def file_part(parts: dict[str, Part], *names: str) -> Part:
    for name in names:
        if name in parts and parts[name].filename is not None:
            return parts[name]
    raise InputError(f"the request has no file part ({' or '.join(names)})")


def download(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _flag(value: str) -> bool:
    if value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise InputError(f"expected true or false, got {value[:20]!r}")


def datastore_routes(router: APIRouter, datastore: Datastore, uploads: Uploads) -> None:
    @router.get("/datastore/")
    def datastore_list(request: Request, output: str = "stats") -> dict:
        """``output=all``: every image and label (ids, extensions, infos); else counts."""
        if output == "all":
            require(request, "read_datastore")
            return datastore.to_json()
        return datastore.status()

    @router.delete("/datastore/")
    def datastore_delete(request: Request, id: str) -> dict:  # noqa: A002 (MONAI Label's name)
        """Delete an image and all its labels (role ``admin``)."""
        require(request, "delete")
        return datastore.delete_image(id)

    @router.put("/datastore/")
    @router.put("/datastore/image")
    async def add_image(request: Request, image: str = "", overwrite: str = "") -> dict:
        """Upload an image (multipart ``file`` + ``params``); ``image`` is its id. Other content
        under an existing id is refused with 409 unless ``overwrite=true`` (its labels go)."""
        require(request, "write_datastore")
        replace = _flag(overwrite)
        async with uploads.form(request) as parts:
            file = file_part(parts, "file")
            params = form_params(parts)
            stem = base_name(file.filename) or ""
            for ext in IMAGE_SUFFIXES:
                stem = stem.removesuffix(ext)
            image_id = image or stem
            return await run_in_threadpool(
                datastore.add_image, image_id, file.path, file.filename, params, overwrite=replace
            )

    @router.get("/datastore/image")
    def download_image(request: Request, image: str) -> Response:
        require(request, "read_datastore")
        return download(*datastore.image_download(image))

    @router.put("/datastore/label")
    async def save_label(request: Request, image: str, tag: str = DEFAULT_TAG) -> dict:
        """Store a label of ``image`` under ``tag`` (multipart ``label`` + ``params``)."""
        require(request, "write_datastore")
        async with uploads.form(request) as parts:
            file = file_part(parts, "label")
            params = form_params(parts)
            await run_in_threadpool(
                datastore.save_label, image, tag, file.path, file.filename, params
            )
        return {"image": image, "label": image}

    @router.get("/datastore/label")
    async def download_label(
        request: Request,
        label: str,
        tag: str = DEFAULT_TAG,
        format: str = "",  # noqa: A002
    ) -> Response:
        """A label as saved; ``format=dicom-seg`` (an image from DICOM): as a DICOM SEG that
        references the image's series."""
        require(request, "read_datastore")
        if format not in ("", "dicom-seg"):
            raise InputError(f"format must be dicom-seg or absent, got {format[:20]!r}")
        data, filename = await run_in_threadpool(
            datastore.label_download, label, tag, seg=format == "dicom-seg"
        )
        return download(data, filename)


def session_routes(router: APIRouter, sessions: TempImages, uploads: Uploads) -> None:
    @router.put("/session/")
    async def create_session(request: Request, expiry: int = 0) -> dict:
        """A temporary image (multipart ``files``), deleted when it expires."""
        async with uploads.form(request) as parts:
            file = file_part(parts, "files", "file")
            item = await run_in_threadpool(sessions.add, file.path, file.filename, float(expiry))
        return {"session_id": item.id, "session_info": item.to_json()}

    @router.get("/session/{session_id}")
    def get_session(session_id: str) -> dict:
        return sessions.get(session_id).to_json()

    @router.delete("/session/{session_id}")
    def remove_session(session_id: str) -> dict:
        item = sessions.get(session_id)
        sessions.delete(session_id)
        return item.to_json()
