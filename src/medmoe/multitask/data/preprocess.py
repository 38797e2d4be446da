"""Image normalisation and lesion-mask resizing, shared by the data sets and the model's users."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medmoe.multitask.constants import IMAGENET_MEAN, IMAGENET_STD


def normalize(
    images: Tensor | np.ndarray,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """``(B, 3, H, W)`` images in [0, 1] -> normalised float32, on the images' own device."""
    x = torch.as_tensor(images, dtype=torch.float32)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    return (x - m) / s


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask ``(H, W)`` resized to ``size`` = (height, width), keeping a pixel positive if
    any source pixel under it is (adaptive max pooling: "area > 0"). Nearest neighbour would keep
    only one source pixel per output pixel and erase 1-2 pixel microaneurysms when downsizing.
    Written with torch's pooling because MONAI's ``Resize`` has no max mode."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    fy, fx = -(-size[0] // m.shape[-2]), -(-size[1] // m.shape[-1])
    if fy > 1 or fx > 1:  # growing along an axis: repeat whole pixels first, then pool
        m = m.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)
    out = F.adaptive_max_pool2d(m, size)
    return out[0, 0].numpy() > 0
