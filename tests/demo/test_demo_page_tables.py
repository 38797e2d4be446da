"""docs/demo.md's demo tables are the committed report's, character for character."""

from __future__ import annotations

import pytest
from tools.update_demo_page import PAGE, REPORT, main

from medmoe.demo.readme_block import README_END, README_START, block, synced
from medmoe.errors import InputError


def test_page_block_equals_committed_report_block():
    readme = block(PAGE.read_text(), source="docs/demo.md")
    report = block(REPORT.read_text(), source="report")
    assert readme == report
    assert "| MoE |" in readme and ("PASS" in readme or "MISS" in readme)


def test_sync_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    report = tmp_path / "report.md"
    readme.write_text(f"intro\n{README_START}\nold | 0.1\n{README_END}\noutro\n")
    report.write_text(f"# r\n{README_START}\nnew | 0.9\n{README_END}\nmore\n")
    assert main([str(report), "--page", str(readme), "--check"]) == 1
    assert main([str(tmp_path), "--page", str(readme)]) == 0  # a demo's folder: its report.md
    assert readme.read_text() == f"intro\n{README_START}\nnew | 0.9\n{README_END}\noutro\n"
    assert main([str(report), "--page", str(readme), "--check"]) == 0


def test_missing_markers_are_an_input_error():
    with pytest.raises(InputError, match="exactly one"):
        synced("no markers", f"{README_START}x{README_END}")
    with pytest.raises(InputError, match="comes before"):
        block(f"{README_END}x{README_START}", source="x")


def test_page_narrative_quotes_the_pretraining_choice_and_the_run():
    """The paragraphs above the block quote the choice's results file and the report."""
    import json
    import re

    from medmoe.demo.config import FULL

    text = PAGE.read_text().split("The settings were changed", 1)[1]
    text = text.split("The block below is copied", 1)[0]
    results = (REPORT.parents[3] / "benchmarks/results/demo_pretrain_steps_cpu.txt").read_text()
    rows = {r["steps"]: r for r in map(json.loads, re.findall(r"^\{.*\}$", results, re.M))}
    quoted = [
        f"{rows[800]['train Dice']:.3f}",
        f"{rows[800]['validation Dice']:.3f}",
        f"{rows[1600]['validation Dice']:.3f}",
    ]
    gate = (REPORT.parents[3] / "benchmarks/results/demo_gate_warmup_cpu.txt").read_text()
    gates = {r["setting"]: r for r in map(json.loads, re.findall(r"^\{.*\}$", gate, re.M))}
    paper, chosen = (
        gates["paper schedule (click loop only)"],
        max(gates.values(), key=lambda r: r["tau objective"]),
    )
    assert chosen["fields"] == {"gate_warmup_epochs": 30, "gate_balance": True, "gate_lr": 0.0003}
    assert all(getattr(FULL, k) == v for k, v in chosen["fields"].items())  # the demo uses it
    for row in (paper, chosen):
        quoted += [f"{row['tau objective']:.3f}", f"{row['routing, balanced']:.3f}"]
    moe_b = re.search(
        r"^\| MoE \| [^|]+ \| ([\d.]+) / [^|]+ \| [^|]+ \| ([\d.]+) /", REPORT.read_text(), re.M
    )
    quoted += list(moe_b.groups())  # Subject B, finetuned groups: points, box
    wall = re.search(r"Total wall time (\d+) s", REPORT.read_text()).group(1)
    assert all(q in text for q in quoted), quoted
    assert f"**{wall} s in all**" in text
