"""The subset of MONAI Label's REST API that 3D Slicer's MONAILabel module and OHIF use.

Formats follow MONAI Label 0.8 (``monailabel/endpoints``): ``params`` is a JSON form field of a
``multipart/form-data`` body; ``/infer`` answers with a multipart body of ``params`` (JSON) and
the label image. The model is of type ``deepgrow``: ``foreground`` and ``background`` are lists
of voxel indices ``[i, j, k]`` of the image as stored (Slicer's IJK), the foreground points
first. The label comes back on the image's own grid with its affine, 1 inside the object, as
NIfTI (``.nii.gz``, default, or ``.nii``) or NRRD (``.nrrd``) as ``result_extension`` asks.

Each call is a pure function of its points, as ``medmoe segment`` with the same points: one
128^3 crop around the first point (or around Slicer's ``roi``, a box prompt), all points at
once. The crop's embedding is cached per image
version and crop position (:class:`EmbeddingLRU`), so the clicks that follow the first on the
same object run only the prompt encoder, the gate and the decoders.
"""

from __future__ import annotations

import dataclasses
import gzip
import time
import uuid
from urllib.parse import parse_qs

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from torch import Tensor

from medmoe.data import Sam3DCrop, Volume
from medmoe.data.io import nifti_bytes
from medmoe.data.prompts import check_box, check_points
from medmoe.errors import InputError
from medmoe.serve.auth import Authenticator
from medmoe.serve.datastore import DEFAULT_TAG, Datastore, TempImages, base_name
from medmoe.serve.engine import Decoded, EmbeddingLRU, Engine
from medmoe.serve.multipart import Part, encode_form, form_params, parse_form, read_body
from medmoe.serve.session import mask_bbox

RESULT_EXTS = {".nii.gz": "application/gzip", ".nii": "application/octet-stream"}
RESULT_EXTS[".nrrd"] = "application/octet-stream"
DTYPES = {"uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32"}
DTYPES["float32"] = "float"  # numpy name -> NRRD type name
OBJECT_LABEL = "object"  # the segment Slicer creates for the user to click into


def nrrd_bytes(array: np.ndarray, affine: np.ndarray, *, compress: bool = True) -> bytes:
    """``array`` (indexed ``[i, j, k]``) with a RAS ``affine`` as an NRRD file in LPS space, as
    3D Slicer and ITK write it; gzip-encoded, or raw with ``compress=False``."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    vec = lambda v: "(" + ",".join(repr(float(x) + 0.0) for x in v) + ")"  # noqa: E731 (no -0.0)
    head = [
        "NRRD0004",
        "# written by medmoe serve",
        f"type: {DTYPES[array.dtype.name]}",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: " + " ".join(str(n) for n in array.shape),
        "space directions: " + " ".join(vec(lps[:3, a]) for a in range(3)),
        "kinds: domain domain domain",
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        "space origin: " + vec(lps[:3, 3]),
    ]
    data = np.asarray(array, dtype=array.dtype.newbyteorder("<")).ravel(order="F").tobytes()
    data = gzip.compress(data, compresslevel=1) if compress else data
    return ("\n".join(head) + "\n\n").encode("ascii") + data


def label_bytes(
    mask: np.ndarray, affine: np.ndarray, *, ext: str, dtype: str, compress: bool = True
) -> bytes:
    array = mask.astype(dtype)
    if ext == ".nrrd":
        return nrrd_bytes(array, affine, compress=compress)
    raw = nifti_bytes(array, affine, gz=False)
    return gzip.compress(raw, compresslevel=1) if ext == ".nii.gz" else raw  # level 1: fast


def _roi(value, shape) -> np.ndarray | None:
    """Slicer's ``roi``, ``[i1, i2, j1, j2, k1, k2]`` (each pair in either order: the corners
    come from RAS), as a box ``(i1, j1, k1, i2, j2, k2)`` with ``lo <= hi``."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) != 6:
        raise InputError("roi must be 6 voxel indices [i1, i2, j1, j2, k1, k2]")
    pairs = np.asarray(value, dtype=np.float64).reshape(3, 2)
    return check_box(np.concatenate([pairs.min(1), pairs.max(1)]), shape)


def _points(value, what: str) -> list[list[float]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(isinstance(x, int | float) for x in p)
        for p in value
    ):
        raise InputError(f"{what} must be a list of [i, j, k] voxel points")
    return value


class Deepgrow:
    """Points in, a label on the image's grid out, through the shared :class:`Engine`."""

    def __init__(self, *, engine: Engine, capacity: int) -> None:
        self.engine = engine
        self.embeddings = EmbeddingLRU(capacity=capacity)

    def __call__(
        self,
        volume: Volume,
        key: str,
        foreground: list,
        background: list,
        box: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Decoded, bool]:
        """``(mask uint8 on the image's grid, decoded, whether the encoder ran)``; ``box`` is
        ``(i1, j1, k1, i2, j2, k2)``: the crop is then centred on it, as ``medmoe segment``'s."""
        if not foreground and not background and box is None:
            raise InputError("give at least one foreground or background point, or a roi")
        if box is not None and not self.engine.supports_boxes:
            raise InputError("this model takes no box prompt (roi)")
        pts = np.array(foreground + background, dtype=np.float64).reshape(-1, 3)
        if len(pts):
            check_points(pts, volume.array.shape)
        labels = np.array([1] * len(foreground) + [0] * len(background), dtype=np.int64)

        def encode() -> tuple[Sam3DCrop, Tensor]:
            if box is not None:
                crop = Sam3DCrop.around_box(volume, box)
            else:
                crop = Sam3DCrop.around_point(volume, pts[0])
            features = self.engine.encode(crop.image)
            # only the crop's geometry is needed from now on: keep no copy of its 128^3 image
            hollow = np.broadcast_to(np.float32(0), crop.image.shape)
            return dataclasses.replace(crop, image=hollow), features

        # the crop is a function of the scan and the box or first point: cached with them
        anchor = ("box", *box.tolist()) if box is not None else ("point", *pts[0].tolist())
        (crop, features), encoded = self.embeddings.get((key, anchor), encode)
        crop_pts = crop.to_crop_coords(pts) if len(pts) else None
        if crop_pts is not None and not crop.contains(crop_pts).all():
            raise InputError(f"all points must lie within one {crop.size}^3 crop")
        decoded = self.engine.decode(
            features,
            points=crop_pts,
            labels=labels if crop_pts is not None else None,
            box=crop.box_to_crop(box) if box is not None else None,
            mask_input=None,
        )
        mask = np.zeros(volume.array.shape, dtype=np.uint8)
        box = mask_bbox(decoded.mask)
        if box is not None:
            lo, hi = crop.footprint(box)
            mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = crop.invert(
                decoded.mask, region=(lo, hi)
            )
        return mask, decoded, encoded


def model_name(engine: Engine) -> str:
    return "medmoe_moe" if engine.is_moe else "medmoe_sam3d"


def app_info(engine: Engine, datastore: Datastore, version: str) -> dict:
    what = (
        f"SAM-Med3D-MoE (general + {', '.join(engine.expert_names) or 'no'} experts)"
        if engine.is_moe
        else "SAM-Med3D"
    )
    model = {
        "type": "deepgrow",
        "labels": [],  # any object: the user names the segment
        "dimension": 3,
        "description": f"medmoe {what}: foreground/background clicks, one object per call",
        "config": {},
        "experts": engine.expert_names,
    }
    return {
        "name": "medmoe",
        "description": "medmoe serve: interactive 3-D segmentation, MONAI Label API",
        "version": version,
        "labels": [OBJECT_LABEL],
        "models": {model_name(engine): model},
        "trainers": {},
        "strategies": {},
        "scoring": {},
        "train_stats": {},
        "datastore": datastore.status(),
    }


async def _form(request: Request, limit: int) -> dict[str, Part]:
    body = await read_body(
        request.stream(), limit=limit, declared=request.headers.get("content-length")
    )
    return parse_form(body, request.headers.get("content-type"))


def _file(parts: dict[str, Part], *names: str) -> Part:
    for name in names:
        if name in parts and parts[name].filename is not None:
            return parts[name]
    raise InputError(f"the request has no file part ({' or '.join(names)})")


def monailabel_router(
    *,
    engine: Engine,
    datastore: Datastore,
    sessions: TempImages,
    limit: int,
    version: str,
    auth: Authenticator | None,
) -> APIRouter:
    """The MONAI Label endpoints; ``limit`` bounds every request body, in bytes."""
    router = APIRouter(tags=["MONAI Label"])

    @router.get("/info/")
    def info() -> dict:
        """The app: its labels and its one ``deepgrow`` model."""
        return app_info(engine, datastore, version)

    _datastore_routes(router, datastore, limit)
    _session_routes(router, sessions, limit)
    _infer_routes(router, engine, datastore, sessions, limit)
    _auth_routes(router, auth)
    return router


def _datastore_routes(router: APIRouter, datastore: Datastore, limit: int) -> None:
    @router.get("/datastore/")
    def datastore_list(output: str = "stats") -> dict:
        """``output=all``: every image and label (ids, extensions, infos); else counts."""
        return datastore.to_json() if output == "all" else datastore.status()

    @router.put("/datastore/")
    @router.put("/datastore/image")
    async def add_image(request: Request, image: str = "") -> dict:
        """Upload an image (multipart ``file`` + ``params``); ``image`` is its id."""
        parts = await _form(request, limit)
        file = _file(parts, "file")
        params = form_params(parts)
        stem = base_name(file.filename) or ""
        for ext in (".nii.gz", ".nii", ".nrrd"):
            stem = stem.removesuffix(ext)
        image_id = image or stem
        await run_in_threadpool(datastore.add_image, image_id, file.data, file.filename, params)
        return {"image": image_id}

    @router.get("/datastore/image")
    def download_image(image: str) -> Response:
        path = datastore.image_file(image)
        return _download(path.read_bytes(), "image" + datastore.objects[image]["image"]["ext"])

    @router.put("/datastore/label")
    async def save_label(request: Request, image: str, tag: str = DEFAULT_TAG) -> dict:
        """Store a label of ``image`` under ``tag`` (multipart ``label`` + ``params``)."""
        parts = await _form(request, limit)
        file = _file(parts, "label")
        await run_in_threadpool(
            datastore.save_label, image, tag, file.data, file.filename, form_params(parts)
        )
        return {"image": image, "label": image}

    @router.get("/datastore/label")
    def download_label(label: str, tag: str = DEFAULT_TAG) -> Response:
        path, filename = datastore.label_file(label, tag)
        return _download(path.read_bytes(), filename)


def _session_routes(router: APIRouter, sessions: TempImages, limit: int) -> None:
    @router.put("/session/")
    async def create_session(request: Request, expiry: int = 0) -> dict:
        """A temporary image (multipart ``files``), deleted when it expires."""
        parts = await _form(request, limit)
        file = _file(parts, "files", "file")
        item = await run_in_threadpool(sessions.add, file.data, file.filename, float(expiry))
        return {"session_id": item.id, "session_info": item.to_json()}

    @router.get("/session/{session_id}")
    def get_session(session_id: str) -> dict:
        return sessions.get(session_id).to_json()

    @router.delete("/session/{session_id}")
    def remove_session(session_id: str) -> dict:
        item = sessions.get(session_id)
        sessions.delete(session_id)
        return item.to_json()


def _result_format(params: dict) -> tuple[str, str, bool]:
    """``(extension, dtype, compress)`` of the label reply, from the request's params."""
    ext = str(params.get("result_extension") or ".nii.gz")
    ext = ext if ext.startswith(".") else "." + ext
    dtype = str(params.get("result_dtype") or "uint8")
    if ext not in RESULT_EXTS or dtype not in DTYPES:
        raise InputError(
            f"result_extension must be one of {sorted(RESULT_EXTS)} and result_dtype one "
            f"of {sorted(DTYPES)}, got {ext!r}, {dtype!r}"
        )
    return ext, dtype, params.get("result_compress", True) is not False  # OHIF: raw NRRD


def _infer_routes(
    router: APIRouter, engine: Engine, datastore: Datastore, sessions: TempImages, limit: int
) -> None:
    deepgrow = Deepgrow(engine=engine, capacity=max(8, 2 * sessions.max_count))
    name = model_name(engine)

    @router.post("/infer/{model}")
    async def infer(
        request: Request, model: str, image: str = "", session_id: str = "", output: str = "all"
    ) -> Response:
        """Deepgrow: ``params`` holds ``foreground`` and ``background`` (IJK voxel points),
        optionally ``roi`` (a box, as Slicer sends it), ``label`` (the segment's name), ``result_extension``, ``result_dtype`` and
        ``result_compress`` (``false``: raw NRRD)."""
        if model != name:
            raise HTTPException(404, f"no model {model!r} (this server has {name!r})")
        params = form_params(await _form(request, limit))
        return await run_in_threadpool(run, params, image, session_id, output)

    def run(params: dict, image: str, session_id: str, output: str) -> Response:
        start = time.perf_counter()
        ext, dtype, compress = _result_format(params)
        if session_id:
            item = sessions.get(session_id)
            volume, key = item.volume, "session:" + item.id
        elif image:
            volume, version = datastore.volume(image)
            key = "image:" + version
        else:
            raise InputError("give an image id or a session_id")
        mask, decoded, encoded = deepgrow(
            volume,
            key,
            _points(params.get("foreground"), "foreground"),
            _points(params.get("background"), "background"),
            _roi(params.get("roi"), volume.array.shape),
        )
        reply = {
            "label_names": {str(params.get("label") or OBJECT_LABEL): 1},
            "model": name,
            "expert": decoded.expert,
            "s_top": decoded.s_top,
            "gate_probs": decoded.gate_probs,
            "iou": decoded.iou,
            "encoded": encoded,
            "voxels": int(mask.sum()),
            "latencies": {"total": round(time.perf_counter() - start, 4)},
        }
        if output == "json":
            return JSONResponse(reply)
        data = label_bytes(mask, volume.affine, ext=ext, dtype=dtype, compress=compress)
        filename = f"medmoe_{uuid.uuid4().hex}{ext}"  # unique: the client saves it by this name
        if output == "image":
            return _download(data, filename)
        ctype, body = encode_form(
            [
                ("params", None, "application/json", _json(reply)),
                ("image", filename, RESULT_EXTS[ext], data),
            ]
        )
        return Response(body, media_type=ctype)


def _json(value) -> bytes:
    import json

    return json.dumps(value).encode("utf-8")


def _download(data: bytes, filename: str) -> Response:
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _auth_routes(router: APIRouter, auth: Authenticator | None) -> None:
    @router.get("/auth/")
    def auth_enabled() -> dict:
        """Whether the server needs a login (MONAI Label's client asks before anything else)."""
        return {"enabled": auth is not None, "client_id": None, "realm": None}

    @router.post("/auth/token")
    async def access_token(request: Request) -> JSONResponse:
        """OAuth2 password form (``username``, ``password``, ``grant_type``) -> bearer token."""
        if auth is None:
            return JSONResponse({"access_token": None, "token_type": None})
        body = await read_body(
            request.stream(), limit=16 << 10, declared=request.headers.get("content-length")
        )
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        token = await run_in_threadpool(auth.login, username, password)
        if token is None:
            return JSONResponse(
                {"detail": "invalid credentials"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    @router.get("/auth/token/valid")
    def valid_token(request: Request) -> dict:
        """200 with the user while the bearer token is valid (the middleware sends 401)."""
        user = getattr(request.state, "user", None) or "anonymous"
        return {"username": user, "email": None, "name": user, "roles": ["user"]}
