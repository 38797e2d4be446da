"""The ball-and-box smoke dataset, against the literal arrays the CLI test used to write."""

from __future__ import annotations

import numpy as np

from medmoe.data.synthetic import BALL_AND_BOX_LABELS, ball_and_box_cases


def test_size_40_is_the_literal_dataset():
    rng = np.random.default_rng(0)
    got = ball_and_box_cases(cases=3, size=40)
    assert list(got) == ["c0", "c1", "c2"] and BALL_AND_BOX_LABELS == {"ball": 1, "box": 2}
    for c in range(3):
        lab = np.zeros((40, 40, 40), np.uint8)
        g = np.indices(lab.shape).transpose(1, 2, 3, 0)
        lab[np.linalg.norm(g - [12, 12, 20], axis=-1) <= 6] = 1
        lab[24:34, 22:32, 15:25] = 2
        img = rng.normal(10, 1, lab.shape) + 20 * (lab == 1) - 5 * (lab == 2)
        image, label, affine = got[f"c{c}"]
        assert np.array_equal(label, lab) and np.array_equal(image, img.astype(np.float32))
        assert np.array_equal(affine, np.diag([1.5, 1.5, 1.5, 1.0]))


def test_the_smoke_scripts_click_lands_in_the_box():
    """``benchmarks/gpu_smoke.py`` clicks voxel (33, 32, 24) of the 48³ volume."""
    _, label, _ = ball_and_box_cases(cases=1, size=48)["c0"]
    assert label[33, 32, 24] == 2 and (label == 1).sum() > 1000
