"""One job end to end in-process, on a tiny random-weights bundle and a synthetic datastore:
crops, expert, gate, guard, and the version folder (accepted) or ``rejected`` (refused)."""

from __future__ import annotations

import json

import pytest
from tests.continual.conftest import write_scan

from medmoe.continual import CaseSpec, ContinualConfig, JobSpec, TrainRequest
from medmoe.continual import pipeline as pipeline_module
from medmoe.continual.guard import GuardDecision
from medmoe.continual.pipeline import run_job

LABEL_INFO = {"spleen": 1, "kidney": 2}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("datastore")
    out = []
    for i in range(4):
        img, lab = write_scan(folder, f"case{i}", seed=i)
        out.append(CaseSpec(f"case{i}", str(img), str(lab), dict(LABEL_INFO)))
    img, _ = write_scan(folder, "case4", seed=4)
    out.append(CaseSpec("case4", str(img)))  # no label: replay crops only
    return tuple(out)


def _spec(tmp_path, bundle, cases, **config) -> JobSpec:
    cfg = dict(crops_per_label=1, replay_clicks=2, warmup_epochs=1, device="cpu")
    return JobSpec(
        job_id="j1", request=TrainRequest("spleen", "spleen", 1),
        config=ContinualConfig(**{**cfg, **config}), bundle=str(bundle),
        version_dir=str(tmp_path / "versions" / "v0001"), job_dir=str(tmp_path / "job"),
        cases=cases,
    )  # fmt: skip


def test_job_writes_an_accepted_version(tmp_path, tiny_bundle, cases):
    from medmoe.moe import load_moe_bundle, read_moe_config

    events = []
    spec = _spec(tmp_path, tiny_bundle, cases, min_ratio=0.0, require_new_gain=False)
    result = run_job(spec, report=lambda **e: events.append(e))
    stages = [e["stage"] for e in events]
    assert stages == ["load", "crops", "expert", "gate", "guard", "done"]
    assert events[1]["train_scans"] == 4 and events[1]["held_scans"] == 1  # 1 of 4 held back
    assert result["accepted"] and result["version"] == "v0001"
    assert result["experts"] == ["liver", "spleen"]
    rows = {(r["task"], r["kind"], r["source"]) for r in result["guard"]["rows"]}
    # the held-back scan: its spleen (the new task) and kidney (no expert: "other")
    assert {("spleen", "new", "labels"), ("other", "old", "labels")} <= rows
    version = tmp_path / "versions" / "v0001"
    moe = load_moe_bundle(version)
    assert moe.expert_names == ["liver", "spleen"]
    report = read_moe_config(version).train_report
    assert report["continual"]["request"]["expert"] == "spleen"
    assert report["continual"]["guard"]["accepted"] is True
    job = tmp_path / "job"
    assert json.loads((job / "result.json").read_text())["accepted"] is True
    assert "| spleen | new | labels |" in (job / "table.md").read_text()
    assert not (job / "cache").exists() and not (tmp_path / "versions" / "v0001.part").exists()
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["v0001"]


def test_refused_bundle_goes_to_the_job_folder(tmp_path, tiny_bundle, cases, monkeypatch):
    def refuse(rows, **kw):
        return GuardDecision(accepted=False, reasons=("forgot",), rows=tuple(rows), min_ratio=1)

    monkeypatch.setattr(pipeline_module, "decide", refuse)
    result = run_job(_spec(tmp_path, tiny_bundle, cases))
    assert not result["accepted"] and result["version"] is None
    assert result["guard"]["reasons"] == ["forgot"] and "refused: forgot" in result["table"]
    assert (tmp_path / "job" / "rejected" / "moe.json").is_file()
    assert not (tmp_path / "versions").exists() or not any((tmp_path / "versions").iterdir())
