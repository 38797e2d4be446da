"""MONAI Label's training and active-learning endpoints: continual learning from the datastore.

- ``POST /train/medmoe_moe`` with params ``{"expert", "label", "max_epochs"}`` starts a job
  (:mod:`medmoe.continual`): an expert for the datastore's labels of that name, then the gate
  over it and the serving experts, then the non-forgetting guard. One job at a time: a second
  gets 409. The job runs in its own process; the server keeps serving.
- ``GET /train/`` (``all``, ``check_if_running``): the job's record (MONAI Label's task fields,
  plus ``stage``, ``epoch``, ``loss`` and at the end ``result`` with the before/after table);
  404 when there is none (or none running, with ``check_if_running``), as MONAI Label answers.
- ``DELETE /train/``: stop the job; the serving bundle stays.
- ``POST /activelearning/{random,first}``: the next scan without a submitted label.

A bundle the guard accepts is written as ``<data_dir>/monailabel/models/medmoe_moe/vNNNN``
beside the earlier ones and served from the next click on, without a restart: the experts and
the gate change, the base (and so every cached embedding and open session) stays. Jobs' specs,
logs and tables are in ``<data_dir>/monailabel/train/<job id>/``.

With ``--auth``, training and stopping need the role ``admin`` or ``reviewer``: a job changes
the model every user is served, which MONAI Label reserves for ``admin``; a reviewer is the
role that vets the labels it learns from. Reading the status and Next sample need the roles
that may read the datastore.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from medmoe.continual.config import ContinualConfig, JobSpec, TrainRequest
from medmoe.continual.runner import JobBusy, TrainRunner
from medmoe.continual.selection import cases_from_index, unlabelled
from medmoe.continual.versions import clean_parts, next_version, versions, write_current
from medmoe.errors import InputError
from medmoe.serve import jsonlimits
from medmoe.serve.body import read_body
from medmoe.serve.engine import Engine
from medmoe.serve.guard import require
from medmoe.serve.monailabel.datastore import Conflict, Datastore

TRAINER = "medmoe_moe"
STRATEGIES = {
    "random": "a random scan without a submitted label",
    "first": "the first scan without a submitted label, by id",
}
MAX_PARAMS_BYTES = 64 << 10


@dataclass(frozen=True)
class TrainingConfig:
    """Continual learning on a served MoE bundle (``medmoe serve --moe BUNDLE``)."""

    bundle: Path  # the bundle served at start-up: the first job's "old" bundle
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    worker_env: dict[str, str] = field(default_factory=dict)  # e.g. OMP_NUM_THREADS


class Trainer:
    """The server's side of the ``medmoe_moe`` trainer: job specs from the datastore, and the
    swap to an accepted bundle."""

    def __init__(self, *, engine: Engine, datastore: Datastore, training: TrainingConfig) -> None:
        self.engine = engine
        self.datastore = datastore
        self.config = training.continual
        self.serving = Path(training.bundle).resolve()
        self.models = datastore.root / "models" / TRAINER
        self.jobs = datastore.root / "train"
        clean_parts(self.models)  # a job cut short by a crash
        self.runner = TrainRunner(on_accept=self.accept, env=training.worker_env)

    def info(self) -> dict:
        return {
            "description": "medmoe continual learning: a task expert for a submitted label, "
            "the gate retrained, served only if the old tasks keep "
            f">= {self.config.min_ratio:g} x their Dice",
            "config": {"expert": "", "label": "", "max_epochs": 10},
        }

    def start(self, params: dict) -> dict:
        request = TrainRequest.from_params(params)
        if not self.engine.is_moe:
            raise InputError("training needs a MoE bundle being served (medmoe serve --moe)")
        objects = self.datastore.to_json()["objects"]
        cases = cases_from_index(
            objects, tag=self.config.label_tag,
            image_path=lambda i: str(self.datastore.image_file(i)),
            label_path=lambda i, t: str(self.datastore.label_file(i, t)[0]),
        )  # fmt: skip
        job_id = uuid.uuid4().hex[:12]
        spec = JobSpec(
            job_id=job_id, request=request, config=self.config, bundle=str(self.serving),
            version_dir=str(next_version(self.models)), job_dir=str(self.jobs / job_id),
            cases=tuple(cases),
        )  # fmt: skip
        try:
            return self.runner.start(spec)
        except JobBusy as err:
            raise Conflict(str(err)) from None

    def accept(self, result: dict) -> None:
        """Serve the accepted version ``result["version"]`` on the serving base (the runner's
        thread calls this); ``current.json`` then names it."""
        from medmoe.moe import MoEPredictor, MoESam3D, load_moe_bundle

        version = self.models / str(result["version"])
        if version not in versions(self.models):
            raise InputError(f"no complete version {version.name!r} to serve")
        old = self.engine.predictor.moe
        new = load_moe_bundle(version)
        device = next(old.base.parameters()).device
        moe = MoESam3D(
            base=old.base, experts=dict(new.experts.items()), gate=new.gate, tau=new.tau,
            weighting=new.weighting,
        ).to(device)  # fmt: skip
        self.engine.swap(MoEPredictor(moe))
        self.serving = version
        write_current(self.models, version)

    def status(self, *, all: bool, check_if_running: bool):  # noqa: A002 (MONAI Label's name)
        record = self.runner.status(all=all, check_if_running=check_if_running)
        if record is None:
            what = "running" if check_if_running else "found"
            raise HTTPException(404, f"no training job {what}")
        return record


def next_sample(datastore: Datastore, strategy: str, *, tag: str) -> dict:
    """MONAI Label's strategies ``random`` and ``first`` over the scans without a label of
    ``tag``: ``{"id", "name"}`` (``name`` with the file's extension, which Slicer loads it by),
    or ``{}`` when every scan has one. No path: Slicer downloads the image by its id."""
    if strategy not in STRATEGIES:
        raise HTTPException(404, f"no strategy {strategy!r} (this server has {sorted(STRATEGIES)})")
    objects = datastore.to_json()["objects"]
    ids = unlabelled(objects, tag=tag)
    if not ids:
        return {}
    image_id = ids[0] if strategy == "first" else secrets.choice(ids)
    ext = objects[image_id]["image"]["ext"]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)
    return {"id": image_id, "name": safe + ext, "strategy": strategy}


async def _params(request: Request) -> dict:
    body = await read_body(
        request.stream(), limit=MAX_PARAMS_BYTES, declared=request.headers.get("content-length")
    )
    if not body.strip():
        return {}
    value = jsonlimits.loads(body)
    if not isinstance(value, dict):
        raise InputError("params must be a JSON object")
    return value


def info_fields(trainer: Trainer | None) -> dict:
    """``/info/``'s ``trainers`` and ``strategies``."""
    return {
        "trainers": {TRAINER: trainer.info()} if trainer is not None else {},
        "strategies": {k: {"description": v} for k, v in STRATEGIES.items()},
    }


def train_routes(
    router: APIRouter,
    *,
    engine: Engine,
    datastore: Datastore,
    training: TrainingConfig | None,
) -> Trainer | None:
    """Register ``/train/`` (when ``training`` is given and the datastore is the local one)
    and ``/activelearning/``; the trainer, or ``None``."""
    tag = (training.continual if training else ContinualConfig()).label_tag

    @router.post("/activelearning/{strategy}")
    async def activelearning(request: Request, strategy: str) -> dict:
        """The next scan to label (Slicer's Next sample)."""
        require(request, "read_datastore")
        await _params(request)  # checked, unused: the strategies take no parameters
        return next_sample(datastore, strategy, tag=tag)

    if training is None or not isinstance(datastore, Datastore):
        return None
    trainer = Trainer(engine=engine, datastore=datastore, training=training)

    @router.post("/train/{model}")
    async def train_start(request: Request, model: str) -> dict:
        """Start a job: params ``{"expert", "label", "max_epochs"}`` (409 while one runs)."""
        require(request, "train")
        if model != TRAINER:
            raise HTTPException(404, f"no trainer {model!r} (this server has {TRAINER!r})")
        params = await _params(request)
        return await run_in_threadpool(trainer.start, params)

    @router.get("/train/")
    def train_status(all: bool = False, check_if_running: bool = False):  # noqa: A002
        """The last job's record (``all``: every job's)."""
        return trainer.status(all=all, check_if_running=check_if_running)

    @router.delete("/train/")
    async def train_stop(request: Request):
        """Stop the running job; its record, or ``null`` when none runs."""
        require(request, "train")
        return await run_in_threadpool(trainer.runner.stop)

    return trainer
