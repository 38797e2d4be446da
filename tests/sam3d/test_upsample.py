"""The mask from the positive box equals thresholding the full upsampling, exactly; the fast 4x
upsampling equals ``F.interpolate`` (trilinear, ``align_corners=False``) to float rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medmoe.sam3d.upsample import positive_box, upsample_logits, upsampled_mask


def full_mask(low: torch.Tensor, size: int) -> torch.Tensor:
    return upsample_logits(low, size) > 0


def interpolate(low: torch.Tensor, size) -> torch.Tensor:
    sizes = (size,) * 3 if isinstance(size, int) else size
    return F.interpolate(low, size=sizes, mode="trilinear", align_corners=False)


@pytest.mark.parametrize("shape", [(32, 32, 32), (3, 10, 2), (2, 2, 2), (7, 1, 5)])
def test_fast_upsampling_equals_interpolate(shape):
    low = torch.randn(2, 1, *shape, generator=torch.Generator().manual_seed(1))
    want = interpolate(low, tuple(4 * s for s in shape))
    got = upsample_logits(low, tuple(4 * s for s in shape))
    assert got.shape == want.shape
    assert ((got - want).abs().max() / want.abs().max()) <= 1e-6


def test_mask_agrees_with_interpolate_away_from_zero():
    low = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(2))
    ref = interpolate(low, 128)
    sure = ref.abs() > 1e-5  # a logit within rounding of 0 may fall on either side
    assert torch.equal(upsampled_mask(low, 128)[sure], (ref > 0)[sure])


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
    assert torch.equal(upsample_logits(low, 32), _reference_by_hand(low))
    with pytest.raises(ValueError, match="multiple"):
        upsampled_mask(low, 30)


def _reference_by_hand(low: torch.Tensor) -> torch.Tensor:
    """The 4x weights written out per output index: source i + (2r - 3)/8, clamped at 0."""
    out = low
    for dim in (4, 3, 2):
        s = out.shape[dim]
        pieces = []
        for o in range(4 * s):
            src = max((o + 0.5) / 4 - 0.5, 0.0)
            i0 = int(src)
            lam = src - i0
            i1 = min(i0 + 1, s - 1)
            a, b = out.narrow(dim, i0, 1), out.narrow(dim, i1, 1)
            pieces.append(torch.lerp(a, b, lam) if lam else a)
        out = torch.cat(pieces, dim)
    return out
