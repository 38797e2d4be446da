"""The MONAI Label app: ``/info/``, ``/auth/`` and the routers of the datastore, temporary
images and inference (:mod:`.deepgrow`), registered by :func:`monailabel_router`."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medmoe.serve.auth import Authenticator
from medmoe.serve.body import read_body
from medmoe.serve.engine import Engine
from medmoe.serve.monailabel.datastore import Datastore
from medmoe.serve.monailabel.datastore_routes import datastore_routes, session_routes
from medmoe.serve.monailabel.deepgrow import OBJECT_LABEL, infer_routes, model_name
from medmoe.serve.monailabel.dicomweb_datastore import DicomWebDatastore
from medmoe.serve.monailabel.proxy import proxy_routes
from medmoe.serve.monailabel.temp_images import TempImages
from medmoe.serve.monailabel.train_routes import TrainingConfig, info_fields, train_routes
from medmoe.serve.monailabel.uploads import Uploads


def app_info(engine: Engine, datastore: Datastore | DicomWebDatastore, version: str) -> dict:
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


def monailabel_router(
    *,
    engine: Engine,
    datastore: Datastore | DicomWebDatastore,
    sessions: TempImages,
    uploads: Uploads,
    version: str,
    auth: Authenticator | None,
    training: TrainingConfig | None = None,
    studies: str | None = None,
) -> APIRouter:
    """The MONAI Label endpoints; request bodies arrive through ``uploads``; ``studies``: the
    DICOMweb root behind ``datastore`` (a :class:`DicomWebDatastore`), for OHIF's proxy."""
    router = APIRouter(tags=["MONAI Label"])

    @router.get("/info/")
    def info() -> dict:
        """The app: its labels and its one ``deepgrow`` model."""
        return {**app_info(engine, datastore, version), **info_fields(trainer)}

    datastore_routes(router, datastore, uploads)
    session_routes(router, sessions, uploads)
    infer_routes(router, engine, datastore, sessions, uploads)
    _auth_routes(router, auth)
    trainer = train_routes(router, engine=engine, datastore=datastore, training=training)
    proxy_routes(router, studies)
    return router


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
        client = request.client.host if request.client else ""
        token = await run_in_threadpool(auth.login, username, password, client=client)
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
        role = (auth.role_of(user) if auth is not None else None) or "admin"
        return {"username": user, "email": None, "name": user, "roles": [role]}
