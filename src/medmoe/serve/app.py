"""The FastAPI application behind ``medmoe serve``: a JSON/PNG/NIfTI API and the static page.

Errors are ``{"detail": "<one line>"}`` with a 4xx code (or 502): 400 bad input, 401 not
logged in, 404 unknown session, 413 upload too large, 415 neither NIfTI nor a zip of a DICOM
series, 502 the ``--studies`` DICOMweb server unreachable or refusing, 503 too many sessions. The
OpenAPI schema is FastAPI's, at ``/openapi.json`` (and browsable at ``/docs``). The same app
serves the MONAI Label API (:mod:`medmoe.serve.monailabel`). With ``auth``, every path but the
page's static files and MONAI Label's login needs ``Authorization: Bearer <token>``
(:mod:`medmoe.serve.auth`). Every request first passes :mod:`medmoe.serve.guard` (security
headers, the Host/Origin check); 409 conflicts with stored data, 421 foreign Host, 429 too many
failed logins, 403 a foreign origin or a role that may not.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from medmoe.data.dicom_seg import Algorithm
from medmoe.data.headers import UnsupportedVoxelType, VolumeTooLarge
from medmoe.data.io import nifti_bytes
from medmoe.errors import InputError, MedmoeError, first_line
from medmoe.sam3d import Sam3DPredictor
from medmoe.serve import jsonlimits
from medmoe.serve.auth import AuthConfig, Authenticator, RateLimited
from medmoe.serve.body import read_body
from medmoe.serve.budget import Busy, MemoryBudget, UploadSlots
from medmoe.serve.dicomzip import algorithm, mask_seg
from medmoe.serve.engine import Engine
from medmoe.serve.guard import BearerAuth, Forbidden, HostGuard, HostPolicy, SecurityHeaders
from medmoe.serve.monailabel.datastore import Conflict, Datastore
from medmoe.serve.monailabel.dicomweb import DicomWebClient, Upstream
from medmoe.serve.monailabel.dicomweb_datastore import DicomWebDatastore
from medmoe.serve.monailabel.router import monailabel_router
from medmoe.serve.monailabel.temp_images import TempImages
from medmoe.serve.monailabel.train_routes import TrainingConfig
from medmoe.serve.monailabel.uploads import Uploads
from medmoe.serve.session import MAX_POINTS
from medmoe.serve.store import NotFound, NotNifti, ServeConfig, SessionStore, TooLarge
from medmoe.serve.views import slice_array, to_png

STATIC = resources.files("medmoe.serve") / "static"
MAX_PROMPT_BYTES = 64 << 10  # a prompt is a few clicks: JSON bodies over this get 413


class Prompt(BaseModel):
    points: list[list[float]] | None = Field(
        None, description="clicks as scan voxel indices [i, j, k]"
    )
    labels: list[int] | None = Field(None, description="1 positive, 0 negative; default all 1")
    box: list[float] | None = Field(None, description="[i1, j1, k1, i2, j2, k2] scan voxels")


class MaskUpdateModel(BaseModel):
    step: int = Field(description="number of prompt steps now in the session")
    lo: list[int] = Field(description="first scan voxel of the changed region")
    hi: list[int] = Field(description="one past the last scan voxel of the changed region")
    bits: str = Field(description="base64 of the region's mask bits, C order, MSB first")
    voxels: int
    expert: str | None = Field(description='"general" or the name of the expert used')
    s_top: float | None = Field(description="the gate's top-1 expert score (MoE only)")
    gate_probs: dict[str, float] | None
    iou: float | None
    encoded: bool = Field(description="whether the image encoder ran for this update")


class SessionModel(BaseModel):
    id: str
    name: str
    shape: list[int]
    spacing: list[float]
    affine: list[list[float]]
    views: dict
    window: float
    level: float
    steps: int
    dicom: bool = Field(False, description="uploaded as DICOM: mask.dcm gives a DICOM SEG")


def _status(err: MedmoeError) -> int:
    for kind, status in (
        (TooLarge, 413),
        (VolumeTooLarge, 413),
        (NotFound, 404),
        (Busy, 503),
        (RateLimited, 429),
        (Forbidden, 403),
        (Conflict, 409),
        (Upstream, 502),
        (NotNifti, 415),
        (UnsupportedVoxelType, 415),
    ):
        if isinstance(err, kind):
            return status
    return 400


def create_app(
    *,
    predictor: Sam3DPredictor,
    config: ServeConfig,
    auth: AuthConfig | Authenticator | None = None,
    training: TrainingConfig | None = None,
) -> FastAPI:
    """The app; ``predictor`` is a :class:`Sam3DPredictor` or :class:`MoEPredictor`; with
    ``auth``, every endpoint but the page's files and the login needs a bearer token."""
    engine = Engine(predictor=predictor)
    budget = MemoryBudget(limit=config.memory_budget_bytes)
    store = SessionStore(config=config, engine=engine, budget=budget)
    authenticator = Authenticator(config=auth) if isinstance(auth, AuthConfig) else auth
    datastore = _datastore(config, budget, algorithm(engine, None))
    temp_images = TempImages(
        root=config.data_dir / "monailabel-sessions",
        ttl_s=config.session_ttl_s,
        max_count=config.max_sessions,
        max_volume_bytes=config.max_volume_bytes,
        budget=budget,
    )
    slots = UploadSlots(limit=config.max_uploads)
    uploads = Uploads(
        root=config.data_dir / "uploads",
        limit=config.max_upload_bytes + (1 << 20),  # the file plus the multipart framing
        slots=slots,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        store.close()  # sessions live only as long as the server
        temp_images.close()
        if isinstance(datastore, DicomWebDatastore):
            datastore.close()

    app = FastAPI(
        lifespan=lifespan,
        title="medmoe",
        summary="Interactive 3-D segmentation with SAM-Med3D(-MoE)",
        version=_version(),
    )
    app.state.store = store
    app.state.datastore = datastore
    app.state.temp_images = temp_images
    app.state.auth = authenticator
    app.state.budget = budget
    app.state.upload_slots = slots
    _middleware(app, config, authenticator)
    app.include_router(
        monailabel_router(
            engine=engine,
            datastore=datastore,
            sessions=temp_images,
            uploads=uploads,
            version=_version(),
            auth=authenticator,
            training=training,
            studies=config.studies,
        )
    )

    @app.exception_handler(MedmoeError)
    async def _medmoe_error(request: Request, err: MedmoeError) -> JSONResponse:
        return JSONResponse({"detail": first_line(err)}, status_code=_status(err))

    _viewer_routes(app, store, engine, config)
    return app


def _datastore(
    config: ServeConfig, budget: MemoryBudget, algo: Algorithm
) -> Datastore | DicomWebDatastore:
    """MONAI Label's datastore: the local one, or the series of ``--studies``' DICOMweb server."""
    common = dict(
        max_cached=config.max_sessions,
        max_volume_bytes=config.max_volume_bytes,
        quota_bytes=config.datastore_quota_bytes,
        budget=budget,
        algorithm=algo,
    )
    if config.studies is None:
        return Datastore(root=config.data_dir / "monailabel", **common)
    client = DicomWebClient(url=config.studies)
    return DicomWebDatastore(client=client, root=config.data_dir / "dicomweb", **common)


def _middleware(app: FastAPI, config: ServeConfig, auth: Authenticator | None) -> None:
    """Outermost last: security headers, then the Host/Origin guard, CORS, the bearer token."""
    if auth is not None:
        app.add_middleware(BearerAuth, auth=auth)
    if config.allow_origins:  # no CORS unless asked for (--cors-origin), e.g. OHIF elsewhere
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.allow_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    policy = HostPolicy(
        bind_host=config.bind_host, public_urls=config.public_urls, origins=config.allow_origins
    )
    app.add_middleware(HostGuard, policy=policy)
    app.add_middleware(SecurityHeaders)


def _viewer_routes(app: FastAPI, store: SessionStore, engine: Engine, config: ServeConfig) -> None:
    """The page's files and the viewer's JSON/PNG/NIfTI API (``/api/...``)."""

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/viewer.js", include_in_schema=False)
    def viewer_js() -> Response:
        js = (STATIC / "viewer.js").read_text(encoding="utf-8")
        return Response(js, media_type="text/javascript")

    @app.get("/api/info")
    def info() -> dict:
        """The model behind the server and the server's limits."""
        return {
            **engine.describe(),
            "max_upload_bytes": config.max_upload_bytes,
            "session_ttl_s": config.session_ttl_s,
        }

    @app.post("/api/sessions", response_model=SessionModel, status_code=201)
    async def upload(
        request: Request,
        filename: str | None = Query(None, description="the scan's file name, for display"),
    ) -> dict:
        """Upload a scan: the request body is the .nii or .nii.gz file itself, or a zip of one
        DICOM series (``mask.dcm`` then gives the mask as a DICOM SEG)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_upload_bytes:
            raise TooLarge(f"the upload is over the limit of {config.max_upload_bytes} bytes")
        with request.app.state.upload_slots.slot():
            session = await store.create(request.stream(), name=filename)
        return session.describe()

    @app.get("/api/sessions/{sid}", response_model=SessionModel)
    def get_session(sid: str) -> dict:
        return store.get(sid).describe()

    @app.delete("/api/sessions/{sid}", status_code=204)
    def delete_session(sid: str) -> Response:
        store.get(sid)
        store.delete(sid)
        return Response(status_code=204)

    _interaction_routes(app, store)
    _download_routes(app, store, engine)


def _interaction_routes(app: FastAPI, store: SessionStore) -> None:
    """The viewer's per-session calls: slices, prompts, undo/reset."""

    @app.get("/api/sessions/{sid}/slice", response_class=Response)
    def get_slice(
        sid: str,
        view: Literal["axial", "coronal", "sagittal"],
        index: int,
        window: float | None = None,
        level: float | None = None,
    ) -> Response:
        """One slice as a grey PNG, screen-oriented as the session's ``views`` describe."""
        s = store.get(sid)
        plane = slice_array(s.volume.array, s.views[view], index)
        w = s.window[0] if window is None else window
        lv = s.window[1] if level is None else level
        return Response(to_png(plane, window=w, level=lv), media_type="image/png")

    @app.post(
        "/api/sessions/{sid}/prompts",
        response_model=MaskUpdateModel,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": Prompt.model_json_schema()}},
            }
        },
    )
    async def add_prompt(sid: str, request: Request) -> dict:
        """Add clicks and/or a box (a :class:`Prompt` as JSON); the mask is re-predicted with
        every prompt so far. The body is read with limits on its size, depth and numbers."""
        s = store.get(sid)
        prompt = await _read_prompt(request)

        def run() -> dict:
            with s.lock:
                return s.add_prompt(
                    points=prompt.points, labels=prompt.labels, box=prompt.box
                ).to_dict()

        return await run_in_threadpool(run)

    @app.post("/api/sessions/{sid}/undo", response_model=MaskUpdateModel)
    def undo(sid: str) -> dict:
        s = store.get(sid)
        with s.lock:
            return s.undo().to_dict()

    @app.post("/api/sessions/{sid}/reset", response_model=MaskUpdateModel)
    def reset(sid: str) -> dict:
        s = store.get(sid)
        with s.lock:
            return s.reset().to_dict()


def _download_routes(app: FastAPI, store: SessionStore, engine: Engine) -> None:
    """The viewer's mask downloads: NIfTI, and a DICOM SEG for a DICOM upload."""

    @app.get("/api/sessions/{sid}/mask.nii.gz", response_class=Response)
    async def download(sid: str) -> Response:
        """The mask as NIfTI, on the uploaded scan's grid and with its affine."""
        s = store.get(sid)

        def build() -> bytes:
            with s.lock:
                return nifti_bytes(s.mask(), s.volume.affine)

        return Response(
            await run_in_threadpool(build),
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{_stem(s.name)}_mask.nii.gz"'},
        )

    @app.get("/api/sessions/{sid}/mask.dcm", response_class=Response)
    async def download_seg(sid: str) -> Response:
        """The mask as a DICOM SEG referencing the uploaded series (a zip of DICOM only)."""
        s = store.get(sid)
        if s.dicom_headers is None:
            raise InputError("the scan was not uploaded as DICOM: save the mask as NIfTI")

        def build() -> bytes:
            with s.lock:
                expert = s.steps[-1].decoded.expert if s.steps else None
                return mask_seg(
                    s.mask(), s.dicom_headers, engine=engine, expert=expert, label="segment"
                )

        return Response(
            await run_in_threadpool(build),
            media_type="application/dicom",
            headers={"Content-Disposition": f'attachment; filename="{_stem(s.name)}_seg.dcm"'},
        )


def _stem(name: str) -> str:
    stem = name.removesuffix(".gz").removesuffix(".nii").removesuffix(".zip")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "scan"


async def _read_prompt(request: Request) -> Prompt:
    try:
        body = await read_body(
            request.stream(), limit=MAX_PROMPT_BYTES, declared=request.headers.get("content-length")
        )
    except TooLarge:
        raise TooLarge(
            f"a prompt is at most {MAX_PROMPT_BYTES >> 10} KiB of JSON "
            f"(and at most {MAX_POINTS} points per object)"
        ) from None
    try:
        return Prompt.model_validate(jsonlimits.loads(body))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InputError(f"invalid prompt: {where}: {first['msg']}") from None


def _version() -> str:
    import medmoe

    return medmoe.__version__
