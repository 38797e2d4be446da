"""docs/training.md's training-memory figures are the benchmark's results file, verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_shows_the_train_memory_results():
    results = (ROOT / "benchmarks" / "results" / "train_memory_cpu.txt").read_text().strip()
    readme = (ROOT / "docs" / "training.md").read_text()
    block = readme.split("<!-- train-memory -->", 1)[1].split("```", 2)[1]
    assert block.strip().removeprefix("text").strip() == results
    assert "target <= 1.10:" in results  # the verdict is computed by the script
