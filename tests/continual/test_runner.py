"""The job runner with a stand-in worker (a script that behaves as the job named by the
request's expert: ``ok`` ends accepted, ``refused`` ends refused, ``bad`` fails, ``slow`` runs
until it is stopped), so that one-at-a-time, stop and the status records are tested without
training anything."""

from __future__ import annotations

import json
import stat
import sys
import textwrap

import pytest

from medmoe.continual import ContinualConfig, JobBusy, JobSpec, TrainRequest, TrainRunner

FAKE_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    job = Path(sys.argv[-1])
    spec = json.loads((job / "spec.json").read_text())
    kind = spec["request"]["expert"]
    def say(**e):
        print(json.dumps(e), flush=True)
    say(stage="expert")
    say(stage="expert", epoch=1, epochs=2, loss=0.5)
    print("a warning from some library", flush=True)
    if kind == "slow":
        part = Path(spec["version_dir"] + ".part")
        part.mkdir(parents=True)
        (part / "gate.safetensors").write_text("half")
        time.sleep(120)
    if kind == "bad":
        say(stage="error", error="no usable crop")
        sys.exit(2)
    say(stage="done")
    say(stage="result", result={"accepted": kind == "ok", "version": "v0001", "table": "|t|"})
    """
)


@pytest.fixture()
def fake_python(tmp_path):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return str(launcher)


def _spec(tmp_path, kind: str, n: int = 1) -> JobSpec:
    return JobSpec(
        job_id=f"job{n}", request=TrainRequest(kind, "spleen", 2), config=ContinualConfig(),
        bundle="/b", version_dir=str(tmp_path / "versions" / "v0001"),
        job_dir=str(tmp_path / "jobs" / f"job{n}"), cases=(),
    )  # fmt: skip


def test_accepted_job_is_served_and_recorded(tmp_path, fake_python):
    served = []
    runner = TrainRunner(on_accept=served.append, python=fake_python)
    assert runner.status() is None and runner.status(check_if_running=True) is None
    first = runner.start(_spec(tmp_path, "ok"))
    assert first["status"] == "RUNNING" and first["request"]["expert"] == "ok"
    runner.wait(60)
    done = runner.status()
    assert done["status"] == "DONE" and done["served"] is True
    assert served == [done["result"]] and done["result"]["version"] == "v0001"
    assert "a warning from some library" in done["details"]
    job = tmp_path / "jobs" / "job1"
    assert json.loads((job / "task.json").read_text())["status"] == "DONE"
    assert len((job / "log.jsonl").read_text().splitlines()) == len(done["details"])
    assert runner.status(check_if_running=True) is None


@pytest.mark.parametrize(
    ("kind", "status", "error"), [("refused", "DONE", None), ("bad", "ERROR", "no usable crop")]
)
def test_refused_and_failed_jobs_serve_nothing(tmp_path, fake_python, kind, status, error):
    served = []
    runner = TrainRunner(on_accept=served.append, python=fake_python)
    runner.start(_spec(tmp_path, kind))
    runner.wait(60)
    record = runner.status()
    assert record["status"] == status and record.get("error") == error and served == []


def test_a_failing_swap_makes_the_job_an_error(tmp_path, fake_python):
    def refuse(result):
        raise ValueError("bundle unreadable\nsecond line")

    runner = TrainRunner(on_accept=refuse, python=fake_python)
    runner.start(_spec(tmp_path, "ok"))
    runner.wait(60)
    record = runner.status()
    assert record["status"] == "ERROR"
    assert record["error"] == "the new bundle could not be served: bundle unreadable"


def test_one_job_at_a_time_and_stop_removes_the_partial_bundle(tmp_path, fake_python):
    served = []
    runner = TrainRunner(on_accept=served.append, python=fake_python)
    runner.start(_spec(tmp_path, "slow"))
    part = tmp_path / "versions" / "v0001.part"
    for _ in range(600):  # until the worker has started writing
        if (part / "gate.safetensors").is_file():
            break
        runner.wait(0.05)
    assert runner.status(check_if_running=True)["id"] == "job1"
    with pytest.raises(JobBusy, match="job1 is running"):
        runner.start(_spec(tmp_path, "ok", n=2))
    stopped = runner.stop()
    assert stopped["status"] == "STOPPED" and "end_ts" in stopped
    assert not part.exists() and not runner.running and served == []
    assert runner.status()["status"] == "STOPPED"  # the reader does not overwrite it
    assert runner.stop() is None  # nothing runs
    # the next job may start, and both are listed
    runner.start(_spec(tmp_path, "ok", n=2))
    runner.wait(60)
    assert [t["status"] for t in runner.status(all=True)] == ["STOPPED", "DONE"]
