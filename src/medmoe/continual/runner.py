"""The background job runner behind MONAI Label's ``/train/`` endpoints: one job at a time, in
its own process (:mod:`medmoe.continual.worker`), so training never blocks the server and a
stop is a kill that leaves nothing half-written.

A job's status is MONAI Label's task record (``id``, ``status`` one of ``SUBMITTED``,
``RUNNING``, ``DONE``, ``ERROR``, ``STOPPED``, ``request``, ``start_ts``, ``end_ts``, the last
``details`` lines), plus the worker's progress (``stage``, ``epoch``, ``epochs``, ``loss``) and,
at the end, its ``result`` (the guard's before/after table and whether the bundle was
accepted). Every line the worker prints is appended to ``<job>/log.jsonl`` and the final record
written to ``<job>/task.json``. When a job ends accepted, ``on_accept(result)`` runs in the
runner's thread (the server swaps bundles there); if it raises, the job is an ``ERROR``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from medmoe.continual.config import JobSpec
from medmoe.errors import MedmoeError, first_line
from medmoe.utils.files import atomic_write

DETAILS = 20  # lines kept in a status record, as MONAI Label keeps
STOP_GRACE_S = 5.0  # after SIGTERM, how long before SIGKILL


class JobBusy(MedmoeError):
    """A training job is already running (HTTP 409)."""


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


class TrainRunner:
    def __init__(
        self,
        *,
        on_accept: Callable[[dict], None] = lambda result: None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.on_accept = on_accept
        self.python = python
        self.env = env
        self._lock = threading.Lock()
        self._tasks: list[dict] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._spec: JobSpec | None = None
        atexit.register(self._kill)  # a server that exits takes its job with it

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._reader is not None and self._reader.is_alive()

    def start(self, spec: JobSpec) -> dict:
        """Start ``spec`` (written to ``<job>/spec.json``); :class:`JobBusy` if one runs."""
        with self._lock:
            if self._reader is not None and self._reader.is_alive():
                raise JobBusy(f"training job {self._tasks[-1]['id']} is running: wait or stop it")
            job = Path(spec.job_dir)
            job.mkdir(parents=True, exist_ok=True)
            spec.write(job / "spec.json")
            task = {
                "id": spec.job_id, "status": "SUBMITTED", "request": asdict(spec.request),
                "start_ts": _now(), "details": deque(maxlen=DETAILS), "stage": "submitted",
            }  # fmt: skip
            env = {**os.environ, **(self.env or {})}
            self._proc = subprocess.Popen(
                [self.python, "-m", "medmoe.continual.worker", str(job)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            )  # fmt: skip
            task["status"] = "RUNNING"
            self._tasks.append(task)
            self._spec = spec
            self._reader = threading.Thread(target=self._follow, args=(task,), daemon=True)
            self._reader.start()
            return self._view(task)

    def _follow(self, task: dict) -> None:
        proc, spec = self._proc, self._spec
        job = Path(spec.job_dir)
        with open(job / "log.jsonl", "a", encoding="utf-8") as log:
            for line in proc.stdout:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                self._absorb(task, line)
        code = proc.wait()
        result = task.get("result")
        if task["status"] == "RUNNING" and code == 0 and result and result.get("accepted"):
            try:
                self.on_accept(result)
                task["served"] = True
            except Exception as err:  # noqa: BLE001 (the job fails, the server stays up)
                task["error"] = f"the new bundle could not be served: {first_line(err)}"
                code = 1
        with self._lock:
            if task["status"] == "RUNNING":
                task["status"] = "DONE" if code == 0 else "ERROR"
                task["end_ts"] = _now()
        shutil.rmtree(job / "cache", ignore_errors=True)
        with atomic_write(job / "task.json") as tmp:
            tmp.write_text(json.dumps(self._view(task), indent=1), encoding="utf-8")

    @staticmethod
    def _absorb(task: dict, line: str) -> None:
        task["details"].append(line)
        try:
            event = json.loads(line)
        except ValueError:
            return  # a warning some library printed: kept in the details only
        if not isinstance(event, dict):
            return
        if event.get("stage") == "result":
            task["result"] = event.get("result")
            return
        if event.get("stage") == "error":
            task["error"] = event.get("error")
        for key in ("stage", "epoch", "epochs", "loss"):
            if key in event:
                task[key] = event[key]
        if "epoch" not in event and "stage" in event:
            for key in ("epoch", "epochs", "loss"):
                task.pop(key, None)

    def stop(self) -> dict | None:
        """Kill the running job (SIGTERM, then SIGKILL after a grace period) and remove its
        partial bundle; its record, or ``None`` when nothing runs (MONAI Label's answer)."""
        with self._lock:
            reader, proc, spec = self._reader, self._proc, self._spec
            if reader is None or not reader.is_alive() or proc is None:
                return None
            task = self._tasks[-1]
            if proc.poll() is not None:  # trained and guarded already: it is being served
                return self._view(task)
            task["status"] = "STOPPED"
            task["end_ts"] = _now()
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=STOP_GRACE_S)
        version = Path(spec.version_dir)
        shutil.rmtree(version.with_name(version.name + ".part"), ignore_errors=True)
        return self._view(task)

    def wait(self, timeout: float | None = None) -> None:
        """Until the current job (if any) has ended and its record is final."""
        reader = self._reader
        if reader is not None:
            reader.join(timeout)

    def status(self, *, all: bool = False, check_if_running: bool = False):  # noqa: A002
        """MONAI Label's ``GET /train/``: the last job's record (``all``: every one); with
        ``check_if_running``, the running job's record or ``None``; ``None`` when none."""
        with self._lock:
            if check_if_running:
                alive = self._reader is not None and self._reader.is_alive()
                return self._view(self._tasks[-1]) if alive else None
            if not self._tasks:
                return None
            return [self._view(t) for t in self._tasks] if all else self._view(self._tasks[-1])

    @staticmethod
    def _view(task: dict) -> dict:
        return {**task, "details": list(task["details"])}
