"""The README's demo tables are the committed report's, character for character."""

from __future__ import annotations

import pytest

from medmoe.demo.readme import README, REPORT, block, main, synced
from medmoe.demo.report import README_END, README_START
from medmoe.errors import InputError


def test_readme_block_equals_committed_report_block():
    readme = block(README.read_text(), source="README")
    report = block(REPORT.read_text(), source="report")
    assert readme == report
    assert "| MoE |" in readme and ("PASS" in readme or "MISS" in readme)


def test_sync_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    report = tmp_path / "report.md"
    readme.write_text(f"intro\n{README_START}\nold | 0.1\n{README_END}\noutro\n")
    report.write_text(f"# r\n{README_START}\nnew | 0.9\n{README_END}\nmore\n")
    assert main(["--readme", str(readme), "--report", str(report), "--check"]) == 1
    assert main(["--readme", str(readme), "--report", str(report)]) == 0
    assert readme.read_text() == f"intro\n{README_START}\nnew | 0.9\n{README_END}\noutro\n"
    assert main(["--readme", str(readme), "--report", str(report), "--check"]) == 0


def test_missing_markers_are_an_input_error():
    with pytest.raises(InputError, match="exactly one"):
        synced("no markers", f"{README_START}x{README_END}")
    with pytest.raises(InputError, match="comes before"):
        block(f"{README_END}x{README_START}", source="x")
