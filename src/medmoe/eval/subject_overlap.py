"""How far a held-out subject is from the training subject: label-map overlap in world space,
centroid distances and image correlation.

Subject B's label map is resampled onto Subject A's grid by affine (nearest neighbour) and the
two maps are compared label value by label value (the demo's mapping: a Neuromorphometrics value
names the same structure in both subjects, :mod:`medmoe.data.atlas`). Each structure's centroid
is taken in world mm on its own subject's grid. The T1 images are compared by Pearson's r on A's
grid (B resampled trilinearly) inside the brain mask, the voxels that are > 0 in both
skull-stripped images.

``benchmarks/subject_overlap.py`` prints these numbers for the demo's two subjects; the demo
report prints the same function's result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from medmoe.data.atlas import Atlas
from medmoe.data.crop import resample
from medmoe.data.prompts import voxel_to_world
from medmoe.errors import InputError


class StructureOverlap(NamedTuple):
    value: int  # the label value, the same structure in both subjects
    name: str  # its name in Subject A
    dice: float  # label-map Dice on A's grid (B resampled, nearest neighbour)
    centroid_mm: float  # distance of the two centroids, world mm


class SubjectOverlap(NamedTuple):
    structures: tuple[StructureOverlap, ...]
    t1_r: float  # Pearson r of the two T1 images inside the brain mask (on A's grid)
    mask_voxels: int  # the brain mask's size, A's voxels

    @property
    def mean_dice(self) -> float:
        return float(np.mean([s.dice for s in self.structures]))

    @property
    def centroid_range_mm(self) -> tuple[float, float]:
        d = [s.centroid_mm for s in self.structures]
        return float(min(d)), float(max(d))

    @property
    def mean_centroid_mm(self) -> float:
        return float(np.mean([s.centroid_mm for s in self.structures]))


def label_dice(a: np.ndarray, b: np.ndarray) -> float:
    """``2|A∩B| / (|A| + |B|)`` of two boolean masks on one grid (NaN when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return math.nan if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def centroid_mm(labels: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    """World (RAS mm) centroid of the voxels of ``labels`` equal to ``value``."""
    idx = np.argwhere(labels == value)
    if not len(idx):
        raise InputError(f"label {value} is absent")
    return voxel_to_world(idx.mean(axis=0), affine)[0]


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation of two equal-length samples."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.size != y.size or x.size < 2:
        raise InputError(f"need two equal samples of >= 2 values, got {x.size} and {y.size}")
    return float(np.corrcoef(x, y)[0, 1])


def subject_overlap(a: Atlas, b: Atlas, values: Iterable[int]) -> SubjectOverlap:
    """Subject ``b`` against subject ``a`` on the structures ``values`` (see the module text).
    A value absent from either subject is an :class:`InputError`."""
    values = tuple(values)
    la, aff = a.labels.array, np.asarray(a.labels.affine, np.float64)
    lb = b.labels.array
    b_on_a = np.rint(resample(lb, b.labels.affine, la.shape, aff, order=0)).astype(np.int64)
    rows = []
    for v in values:
        if not (la == v).any() or not (lb == v).any():
            raise InputError(f"structure {v} is missing from one of the subjects")
        dist = np.linalg.norm(centroid_mm(la, aff, v) - centroid_mm(lb, b.labels.affine, v))
        name = a.names.get(v, str(v))
        rows.append(StructureOverlap(v, name, label_dice(la == v, b_on_a == v), float(dist)))
    t1a = np.asarray(a.t1.array, np.float32)
    t1b = resample(b.t1.array, b.t1.affine, t1a.shape, a.t1.affine, order=1)
    mask = (t1a > 0) & (t1b > 0)
    return SubjectOverlap(tuple(rows), pearson_r(t1a[mask], t1b[mask]), int(mask.sum()))


def overlap_table(ov: SubjectOverlap) -> str:
    """Markdown: one row per structure, then the mean."""
    lines = ["| Structure | value | Dice (world) | centroid distance, mm |", "|---|---|---|---|"]
    for s in ov.structures:
        lines.append(f"| {s.name} | {s.value} | {s.dice:.3f} | {s.centroid_mm:.1f} |")
    lines.append(f"| mean | | {ov.mean_dice:.3f} | {ov.mean_centroid_mm:.1f} |")
    return "\n".join(lines)


def overlap_summary(ov: SubjectOverlap) -> str:
    """One sentence with the figures the demo page quotes."""
    lo, hi = ov.centroid_range_mm
    return (
        f"Subject B's label map, resampled onto Subject A's grid, overlaps A's at a mean Dice of "
        f"{ov.mean_dice:.3f} over the {len(ov.structures)} demo structures; their centroids lie "
        f"{lo:.1f}-{hi:.1f} mm apart (mean {ov.mean_centroid_mm:.1f} mm); the T1 images "
        f"correlate at r = {ov.t1_r:.3f} inside the brain mask ({ov.mask_voxels} voxels)."
    )
