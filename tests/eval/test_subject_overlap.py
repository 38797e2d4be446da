"""medmoe.eval.subject_overlap against hand-computed values on tiny synthetic subjects."""

from __future__ import annotations

import numpy as np
import pytest

from medmoe.data.atlas import Atlas
from medmoe.data.volume import Volume
from medmoe.errors import InputError
from medmoe.eval.subject_overlap import overlap_summary, overlap_table, subject_overlap


def _subjects() -> tuple[Atlas, Atlas]:
    """A: a 4^3 block of label 1 at voxels 2..5 (identity affine, 1 mm). B: the same block on a
    grid shifted +1 mm in x, so in world space it covers x = 3..6: on A's grid the overlap is
    3 of 4 slices, Dice = 2 * 48 / (64 + 64) = 0.75, and the centroids are 1 mm apart.

    T1: four brain voxels, A = (1, 2, 3, 4), B = (2, 1, 4, 3) on the same grid: deviations
    (-1.5, -0.5, 0.5, 1.5) and (-0.5, -1.5, 1.5, 0.5), r = 3 / 5 = 0.6. A fifth voxel is brain
    in A only (100 there, 0 in B): outside the mask, or r would be about -0.2."""
    eye = np.eye(4)
    shifted = np.eye(4)
    shifted[0, 3] = 1.0
    lab = np.zeros((10, 10, 10), np.int64)
    lab[2:6, 2:6, 2:6] = 1
    ta, tb = np.zeros((10, 10, 10), np.float32), np.zeros((10, 10, 10), np.float32)
    for i, (x, y) in enumerate(((1, 2), (2, 1), (3, 4), (4, 3))):
        ta[i + 3, 5, 5], tb[i + 3, 5, 5] = x, y
    ta[8, 8, 8] = 100.0
    a = Atlas(Volume(ta, eye), Volume(lab, eye), {1: "block"})
    b = Atlas(Volume(tb, eye), Volume(lab.copy(), shifted), {1: "block"})
    return a, b


def test_overlap_by_hand():
    ov = subject_overlap(*_subjects(), [1])
    (s,) = ov.structures
    assert s.value == 1 and s.name == "block"
    assert s.dice == pytest.approx(0.75)
    assert s.centroid_mm == pytest.approx(1.0)
    assert ov.t1_r == pytest.approx(0.6, abs=1e-6) and ov.mask_voxels == 4
    assert ov.mean_dice == pytest.approx(0.75) and ov.centroid_range_mm == (1.0, 1.0)


def test_identical_subjects_overlap_fully():
    a, _ = _subjects()
    ov = subject_overlap(a, a, [1])
    assert ov.structures[0].dice == 1.0 and ov.structures[0].centroid_mm == 0.0
    assert ov.t1_r == pytest.approx(1.0)


def test_text_and_missing_structure():
    ov = subject_overlap(*_subjects(), [1])
    assert "| block | 1 | 0.750 | 1.0 |" in overlap_table(ov)
    assert "| mean | | 0.750 | 1.0 |" in overlap_table(ov)
    assert "mean Dice of 0.750 over the 1 demo structures" in overlap_summary(ov)
    assert "r = 0.600 inside the brain mask (4 voxels)" in overlap_summary(ov)
    with pytest.raises(InputError, match="structure 7"):
        subject_overlap(*_subjects(), [1, 7])
