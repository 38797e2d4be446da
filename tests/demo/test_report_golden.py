"""The demo report, character for character, from fixed evaluation rows and a fixed run record
(tests/demo/report_inputs.py). ``data/report_golden.md`` was written by the report code before
it was split into named results (medmoe.demo.results) and prose files; a change to the report's
text shows here as a diff. To accept an intended change, rewrite the file from ``render_report``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.demo import report_inputs as inputs

from medmoe.demo.figure import bar_chart
from medmoe.demo.readme_block import block
from medmoe.demo.report import RunRecord, render_report, write_report
from medmoe.demo.results import demo_results


def _results():
    return demo_results(inputs.rows(), cfg=inputs.CONFIG, names=inputs.names(), tau=inputs.TAU)


def _run() -> RunRecord:
    return RunRecord(
        training=inputs.TRAINING,
        timings=inputs.TIMINGS,
        cpu=inputs.CPU,
        loads=inputs.LOADS,
        machine=inputs.MACHINE,
        config_text=inputs.CFG_TEXT,
    )


def test_report_text_is_unchanged(tmp_path):
    path = write_report(
        tmp_path / "report.md", results=_results(), run=_run(), figures=inputs.FIGURES
    )
    got, want = path.read_text(encoding="utf-8"), inputs.GOLDEN.read_text(encoding="utf-8")
    assert got == want
    assert render_report(_results(), _run(), inputs.FIGURES) == want
    summary = block(got, source="report")
    assert "#### Deviations from the paper" in summary and "- **Gate schedule.**" in summary
    assert "n/a" in got  # the fixture leaves a group without Subject A crops


def test_named_results_hold_the_tables():
    res = _results()
    m = len(inputs.CONFIG.groups)
    assert [r.model for r in res.b.table1] == ["Baseline", "FT", "MoE"]
    assert all(len(r.cells) == 6 for r in res.b.table1)
    assert len(res.b.table2_points) == 3 * len(inputs.CONFIG.taus) + 1 + 3
    assert all(len(r.groups) == m for r in res.b.table2_box)
    assert [len(c) for c in res.b.confusion] == [m + 1, m + 1]
    # every Subject B evaluation row of the centre-click points runs is in the confusion counts
    n_b = sum(
        1
        for r in inputs.rows()
        if (r["subject"], r["method"], r["prompt"], r["first"]) == ("B", "MoE", "points", "centre")
    )
    assert sum(map(sum, res.b.confusion[0])) == n_b
    assert {s.name for s in res.b.structures} == {f"structure_{v}" for v in inputs.CONFIG.values}


def test_bar_chart_from_named_results(tmp_path):
    path = bar_chart(_results().b, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prose_is_shipped_as_package_data():
    root = Path(__file__).resolve().parents[2]
    pyproject = (root / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1]
    package_data = json.loads(re.search(r"^medmoe = (\[.*\])$", section, re.M).group(1))
    for name in ("intro.md", "deviations.md"):
        assert (root / "src/medmoe/demo" / name).is_file()
        assert any(Path("demo", name).match(pattern) for pattern in package_data), name
