"""docs/performance.md's pretraining-throughput paragraph quotes benchmarks/pretrain_throughput.py's
output, figure by figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pretraining_paragraph_matches_the_results_file():
    doc = (ROOT / "docs" / "performance.md").read_text()
    para = doc.split("`python benchmarks/pretrain_throughput.py`", 1)[1].split("\n\n", 1)[0]
    out = (ROOT / "benchmarks" / "results" / "pretrain_throughput_cpu.txt").read_text()
    steps = re.search(r"steps/s ([\d.]+) \| crops/s ([\d.]+)", out).groups()
    share = re.search(r"share of a step ([\d.]+%)", out).group(1)
    crop, of_step = re.search(
        r"alone in this process: ([\d.]+) s \(([\d.]+) of a step", out
    ).groups()
    load = re.search(r"load average \(1 min\) ([\d.]+)", out).group(1)
    flat = " ".join(para.split())
    for figure in (*steps, share, crop, of_step, load):
        assert figure in flat, (figure, flat)
