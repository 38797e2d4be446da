from __future__ import annotations

import math

import numpy as np

from medmoe.eval import dice, hd95, nsd


def test_dice_hand_computed():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[0:4, 0:5, 0:5] = True  # 100
    b[2:6, 0:5, 0:5] = True  # 100, overlap 50
    assert math.isclose(dice(a, b), 2 * 50 / 200)


def test_shifted_slab_distances_in_mm():
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros_like(a)
    a[5:10, 5:15, 5:15] = True
    b[7:12, 5:15, 5:15] = True  # shifted by 2 voxels along axis 0
    # with 3 mm voxels along axis 0, the surfaces that move are 6 mm apart; other faces 0 mm.
    h = hd95(a, b, spacing=(3.0, 1.0, 1.0))
    assert math.isclose(h, 6.0, abs_tol=1e-6)
    assert nsd(a, b, spacing=(3.0, 1.0, 1.0), tolerance_mm=7.0) == 1.0
    assert nsd(a, b, spacing=(3.0, 1.0, 1.0), tolerance_mm=1.0) < 1.0


def test_empty_mask_rules():
    z = np.zeros((5, 5, 5), bool)
    o = z.copy()
    o[2, 2, 2] = True
    assert (
        dice(z, z) == 1.0
        and nsd(z, z, spacing=(1, 1, 1)) == 1.0
        and hd95(z, z, spacing=(1, 1, 1)) == 0
    )
    assert dice(z, o) == 0.0 and nsd(o, z, spacing=(1, 1, 1)) == 0.0
    assert hd95(z, o, spacing=(1, 1, 1)) == float("inf")
