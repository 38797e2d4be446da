"""The mask from the positive box equals thresholding the full trilinear upsampling, exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medmoe.sam3d.upsample import positive_box, upsample_logits, upsampled_mask


def full_mask(low: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(low, size=(size,) * 3, mode="trilinear", align_corners=False) > 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("where", ["centre", "corner", "edge", "scattered", "none", "all"])
def test_equals_full_upsampling(seed, where):
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(1, 1, 32, 32, 32, generator=gen) - 4.0
    if where == "centre":
        low[:, :, 10:17, 12:20, 9:13] += 6
    elif where == "corner":  # touches the volume's border: the crop clamps like the volume
        low[:, :, 0:3, 29:32, 30:32] += 6
    elif where == "edge":  # a single positive voxel next to the last index
        low[:, :, 31, 5, 17] = 0.7
    elif where == "scattered":
        low += 2.5  # positives spread over the whole volume
    elif where == "all":
        low = low.abs() + 1
    elif where == "none":
        low = -low.abs()
    got = upsampled_mask(low, 128)
    assert got.dtype == torch.bool and got.shape == (1, 1, 128, 128, 128)
    assert torch.equal(got, full_mask(low, 128))


def test_positive_box_by_hand():
    low = torch.full((1, 1, 32, 32, 32), -1.0)
    assert positive_box(low) is None
    low[0, 0, 5, 0, 31] = 2.0
    low[0, 0, 9, 3, 30] = 1.0
    # x: 5..9 widened to [4, 11); y: 0..3 -> [0, 5); z: 30..31 -> [29, 32)
    assert positive_box(low) == [(4, 11), (0, 5), (29, 32)]


def test_batch_and_upsample_logits():
    gen = torch.Generator().manual_seed(7)
    low = torch.randn(2, 1, 8, 8, 8, generator=gen) - 1
    assert torch.equal(upsampled_mask(low, 32), upsample_logits(low, 32) > 0)
    with pytest.raises(ValueError, match="multiple"):
        upsampled_mask(low, 30)
