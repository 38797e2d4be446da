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


def test_held_out_section_follows_the_block():
    """With Subject B's overlap the report gains one section after the docs block (the block
    and the rest of the text are the golden's); without it, the golden text exactly."""
    import dataclasses

    from medmoe.demo.readme_block import README_END
    from medmoe.eval.subject_overlap import StructureOverlap, SubjectOverlap

    overlap = SubjectOverlap(
        (StructureOverlap(35, "Brain_Stem", 0.8, 1.0), StructureOverlap(59, "Thal", 0.6, 3.0)),
        t1_r=0.81,
        mask_voxels=1000,
    )
    res = dataclasses.replace(_results(), overlap=overlap)
    text = render_report(res, _run(), inputs.FIGURES)
    golden = inputs.GOLDEN.read_text(encoding="utf-8")
    section = text.split(README_END, 1)[1].split("## Subject B, complete", 1)[0]
    assert section.startswith("\n\n## How far Subject B is held out\n")
    assert "mean Dice of 0.700 over the 2 demo structures" in section
    assert "1.0-3.0 mm apart (mean 2.0 mm)" in section and "r = 0.810" in section
    assert "| Brain_Stem | 35 | 0.800 | 1.0 |\n| Thal | 59 | 0.600 | 3.0 |\n" in section
    assert "| mean | | 0.700 | 2.0 |" in section
    assert text.replace(section.removeprefix("\n\n"), "", 1) == golden
    assert block(text, source="report") == block(golden, source="golden")
