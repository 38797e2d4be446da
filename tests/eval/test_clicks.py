from __future__ import annotations

import numpy as np
import pytest

from medmoe.errors import InputError
from medmoe.eval import box_from_mask, first_click, next_click


def test_center_click_is_deepest_point_of_largest_error_component():
    gt = np.zeros((20, 20, 20), bool)
    gt[2:9, 2:9, 2:9] = True  # 7^3 cube, missed entirely -> FN component of 343 voxels
    gt[15:18, 15:18, 15:18] = True  # 3^3 cube, predicted correctly
    pred = np.zeros_like(gt)
    pred[15:18, 15:18, 15:18] = True
    pred[12:14, 0:2, 0:2] = True  # 8-voxel FP component
    click = next_click(pred, gt, method="center")
    # the centre of a 7-voxel cube spanning 2..8 is voxel 5, at distance 4 from the outside
    assert click.point.tolist() == [5, 5, 5] and click.label == 1


def test_center_click_on_false_positive_is_negative():
    gt = np.zeros((15, 15, 15), bool)
    gt[1:4, 1:4, 1:4] = True
    pred = gt.copy()
    pred[6:13, 6:11, 6:11] = True  # a 7x5x5 FP slab, larger than any FN
    pred[1, 1, 1] = False  # one FN voxel
    click = next_click(pred, gt, method="center")
    assert click.label == 0
    assert click.point.tolist() == [8, 8, 8]  # distance 3 along y/z, first of 9..10 ties along x


def test_random_click_labels_follow_the_region():
    gt = np.zeros((10, 10, 10), bool)
    gt[:5] = True
    pred = np.zeros_like(gt)
    pred[7:] = True
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        c = next_click(pred, gt, method="random", rng=rng)
        if gt[tuple(c.point)]:
            assert c.label == 1 and not pred[tuple(c.point)]
        else:
            assert c.label == 0 and pred[tuple(c.point)]
        seen.add(c.label)
    assert seen == {0, 1}


def test_no_click_when_perfect_and_first_click_inside_gt():
    gt = np.zeros((9, 9, 9), bool)
    gt[2:7, 2:7, 2:7] = True
    assert next_click(gt, gt) is None
    c = first_click(gt)
    assert c.point.tolist() == [4, 4, 4] and c.label == 1
    r = first_click(gt, method="random", rng=np.random.default_rng(1))
    assert gt[tuple(r.point)]
    with pytest.raises(InputError, match="empty"):
        first_click(np.zeros_like(gt))


def test_box_from_mask_and_jitter():
    gt = np.zeros((10, 12, 14), bool)
    gt[2:5, 3:9, 4:6] = True
    assert box_from_mask(gt).tolist() == [2, 3, 4, 4, 8, 5]
    rng = np.random.default_rng(0)
    for _ in range(50):
        b = box_from_mask(gt, jitter=2, rng=rng)
        assert (np.abs(b - [2, 3, 4, 4, 8, 5]) <= 2).all() and (b[:3] <= b[3:]).all()
