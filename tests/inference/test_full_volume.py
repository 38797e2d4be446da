from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from scipy import ndimage

from medmoe.data import Volume
from medmoe.inference import segment_full_volume


class ThresholdPredictor:
    """Stand-in model: predicts exactly the bright object inside whatever crop it is given."""

    def __init__(self):
        self.calls = 0

    def set_image(self, image):
        self.image = np.asarray(image)
        self.calls += 1

    def predict(self, points=None, labels=None, box=None, mask_input=None):
        # the tube is bright (raw 100) on a background of 10: threshold halfway between the
        # background level (the median) and the tube level (the maximum), in z-scored units
        fg = self.image > (np.median(self.image) + self.image.max()) / 2
        logits = torch.from_numpy(np.where(fg, 5.0, -5.0).astype(np.float32))[None, None]
        return SimpleNamespace(logits=logits, mask=logits > 0, low_res_logits=None)


def test_300mm_tube_is_covered_continuously():
    # 2 x 2 x 3 mm voxels; a 300 mm tube of radius 8 mm along the third (S) axis
    shape = (60, 60, 130)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T
    tube = (np.linalg.norm(world[..., :2] - [60.0, 60.0], axis=-1) <= 8) & (
        (world[..., 2] >= 40) & (world[..., 2] <= 340)
    )
    rng = np.random.default_rng(0)
    image = (rng.normal(10, 1, shape) + 90 * tube).astype(np.float32)
    vol = Volume(image, affine)
    predictor = ThresholdPredictor()
    start = np.argwhere(tube)[len(np.argwhere(tube)) // 2]
    result = segment_full_volume(predictor, vol, points_ijk=start[None], labels=np.array([1]))
    assert result.mask.shape == shape
    # 300 mm at 1.5 mm is 200 voxels: more than one 128-voxel window is needed
    assert len(result.windows) >= 3 and not result.hit_limit
    inter = (result.mask & tube).sum()
    assert 2 * inter / (result.mask.sum() + tube.sum()) > 0.95
    # continuous: one connected component spanning the tube's whole length
    lab, n = ndimage.label(result.mask)
    assert n == 1
    ks = np.argwhere(result.mask)[:, 2]
    assert (
        ks.min() <= np.argwhere(tube)[:, 2].min() + 1
        and ks.max() >= np.argwhere(tube)[:, 2].max() - 1
    )
    # a single window (max_windows=1) covers only part of it
    single = segment_full_volume(
        ThresholdPredictor(), vol, points_ijk=start[None], labels=np.array([1]), max_windows=1
    )
    assert single.hit_limit and single.mask.sum() < 0.8 * tube.sum()
