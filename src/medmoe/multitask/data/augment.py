"""Training augmentation as in the report: horizontal flip, rotation, rescaling, translation,
contrast and blur, applied jointly to a photograph and its lesion masks (MONAI 2-D dictionary
transforms).

The report names the kinds of augmentation but not their magnitudes; the ranges below are
medmoe's choice (mild enough for the lesions and the optic disc to stay in the field).

Geometry moves image and masks together (one ``RandAffined`` over both keys). The masks are
resampled bilinearly and binarised at 0.25 (``AsDiscreted``) rather than with nearest neighbour:
a 1-pixel microaneurysm spreads over at most 4 output pixels under a rotation, one of them with
weight >= 0.25, so it survives; nearest neighbour can drop it when the image shrinks. Under a
zoom-out its weight can fall below 0.25, so survival is not guaranteed. What was measured
(``tests/multitask/test_augment.py``): over 30 draws of the report's ranges, a one-pixel dot in
the central half of a 48 x 64 or 128 x 192 image was never lost. A dot that translation moves
out of the field is lost, as its lesion is. The review of commit ad936c7 counted 4 losses in 30
draws; that count is not reproduced by this measurement.

Every sample's randomness comes from ``(seed, epoch, index)`` (:func:`augment_seed`), never from
a generator that advances, so a run killed and resumed draws exactly the augmentations of an
uninterrupted one, whatever the number of DataLoader workers or processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from medmoe.errors import InputError

AUGMENTS = ("none", "report")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    flip_prob: float = 0.5  # horizontal flip
    affine_prob: float = 0.8  # one affine: rotation, rescaling and translation together
    rotate_degrees: float = 15.0  # uniform in +-
    scale: float = 0.1  # zoom factor 1 + uniform(-scale, scale)
    translate: float = 0.05  # fraction of the image's height / width, uniform in +-
    contrast_prob: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)  # MONAI's contrast: intensity ** gamma
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.25, 1.0)  # pixels
    mask_threshold: float = 0.25


def augment_config(name: str) -> AugmentConfig | None:
    """``"report"``: the report's augmentations; ``"none"``: no augmentation (``None``)."""
    if name == "none":
        return None
    if name == "report":
        return AugmentConfig()
    raise InputError(f"unknown augmentation {name!r}; use one of {AUGMENTS}")


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """The (uint32) seed of sample ``index``'s augmentation at ``epoch``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def build_transform(config: AugmentConfig, size: tuple[int, int], *, masks: bool):
    """A MONAI ``Compose`` over ``{"image": (3, H, W)[, "masks": (C, H, W)]}``."""
    from monai.transforms import (
        AsDiscreted,
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandFlipd,
        RandGaussianSmoothd,
    )

    keys = ("image", "masks") if masks else ("image",)
    rot = math.radians(config.rotate_degrees)
    steps = [
        RandFlipd(keys=keys, prob=config.flip_prob, spatial_axis=1),  # axis 1 of (H, W): left-right
        RandAffined(
            keys=keys,
            prob=config.affine_prob,
            rotate_range=(rot,),
            scale_range=(config.scale, config.scale),
            translate_range=(config.translate * size[0], config.translate * size[1]),
            mode="bilinear",
            padding_mode="zeros",
        ),
        RandAdjustContrastd(keys="image", prob=config.contrast_prob, gamma=config.gamma),
        RandGaussianSmoothd(
            keys="image",
            prob=config.blur_prob,
            sigma_x=config.blur_sigma,
            sigma_y=config.blur_sigma,
        ),
    ]
    if masks:
        steps.append(AsDiscreted(keys="masks", threshold=config.mask_threshold))
    return Compose(steps)


class Augmenter:
    """Applies the transform to one sample with the seed of ``(seed, epoch, index)``."""

    def __init__(self, *, config: AugmentConfig, size: tuple[int, int], seed: int) -> None:
        self.config, self.seed = config, seed
        self.with_masks = build_transform(config, size, masks=True)
        self.image_only = build_transform(config, size, masks=False)

    def __call__(
        self, image: Tensor, masks: Tensor | None, *, epoch: int, index: int
    ) -> tuple[Tensor, Tensor | None]:
        """``image`` ``(3, H, W)`` float in [0, 1]; ``masks`` ``(C, H, W)`` bool or None."""
        transform = self.image_only if masks is None else self.with_masks
        transform.set_random_state(seed=augment_seed(self.seed, epoch, index))
        sample = {"image": image.float()}
        if masks is not None:
            sample["masks"] = masks.float()
        out = transform(sample)
        new_image = _plain(out["image"]).float().clamp_(0.0, 1.0)
        new_masks = None if masks is None else _plain(out["masks"]) > 0.5
        return new_image.contiguous(), new_masks


def _plain(t) -> Tensor:
    """A plain tensor from MONAI's output (a ``MetaTensor`` would carry its metadata along)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)
