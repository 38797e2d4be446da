"""From the decoder's low-resolution logits to the full-resolution mask, computing no more than
the mask needs.

The published post-processing is trilinear upsampling (``align_corners=False``) of the
``(B, 1, s, s, s)`` logits to the input size, then ``logits > 0``. Every upsampled value is a
convex combination of (at most) 2x2x2 low-resolution values, so where all of them are ``<= 0``
the upsampled value is ``<= 0`` too (in floating point as well: non-negative weights times
non-positive values sum to a non-positive number) and the mask is ``False``. Hence only the box
of low-resolution voxels that are ``> 0``, widened by one voxel of interpolation support, needs
upsampling; :func:`upsampled_mask` upsamples that crop alone and places it in an all-``False``
mask. Inside the crop the interpolation weights are those of the whole volume (the scale factor
is the same and the offsets are whole voxels), and where the crop's border clamping differs from
the whole volume's, both sources are ``<= 0``: the mask is identical to thresholding the full
upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def upsample_logits(low_res_logits: Tensor, size: int) -> Tensor:
    """Trilinear upsampling of ``(B, 1, s, s, s)`` logits to ``(B, 1, size, size, size)``."""
    return F.interpolate(low_res_logits, size=(size,) * 3, mode="trilinear", align_corners=False)


def positive_box(low_res_logits: Tensor) -> list[tuple[int, int]] | None:
    """Per-axis ``[lo, hi)`` of the voxels ``> 0`` in any sample, widened by one; ``None`` if
    no voxel is positive. ``low_res_logits``: ``(B, 1, s, s, s)``."""
    peak = low_res_logits.detach().flatten(0, 1).amax(dim=0)  # (s, s, s); amax beats any()
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        idx = (peak.amax(dim=others) > 0).nonzero()
        if idx.numel() == 0:
            return None
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        box.append((max(lo - 1, 0), min(hi + 1, peak.shape[axis])))
    return box


def upsampled_mask(low_res_logits: Tensor, size: int) -> Tensor:
    """``upsample_logits(low_res_logits, size) > 0`` (bool), upsampling only the positive box."""
    b, c, s = low_res_logits.shape[:3]
    if size % s:
        raise ValueError(f"size {size} is not a multiple of the low-resolution side {s}")
    f = size // s
    box = positive_box(low_res_logits)
    if box is not None and all(hi - lo == s for lo, hi in box):  # the object fills the crop
        return upsample_logits(low_res_logits, size) > 0
    mask = torch.zeros(b, c, size, size, size, dtype=torch.bool, device=low_res_logits.device)
    if box is None:
        return mask
    (x0, x1), (y0, y1), (z0, z1) = box
    crop = low_res_logits[:, :, x0:x1, y0:y1, z0:z1]
    up = F.interpolate(
        crop, size=(f * (x1 - x0), f * (y1 - y0), f * (z1 - z0)), mode="trilinear",
        align_corners=False,
    )  # fmt: skip
    torch.gt(up, 0, out=mask[:, :, f * x0 : f * x1, f * y0 : f * y1, f * z0 : f * z1])
    return mask
