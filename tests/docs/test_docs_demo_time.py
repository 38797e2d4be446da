"""The README's demo wall times are the reports' own "Total wall time" figures."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wall_time(report: Path) -> str:
    return re.search(r"Total wall time (\d+) s", report.read_text()).group(1)


def test_readme_demo_times_come_from_the_reports():
    readme = " ".join((ROOT / "README.md").read_text().split())
    committed = _wall_time(ROOT / "docs" / "figures" / "demo" / "report.md")
    record = ROOT / "benchmarks" / "results" / "demo_report_2026-12-08_cpu.md"
    assert f"{committed} s for the committed report" in readme
    assert f"{_wall_time(record)} s on a slower AMD EPYC machine" in readme
    assert record.relative_to(ROOT).as_posix() in readme
