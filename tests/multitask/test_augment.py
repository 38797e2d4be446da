"""Augmentation moves image and masks together, and is a pure function of (seed, epoch, index)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medmoe.errors import InputError
from medmoe.multitask.data.augment import AugmentConfig, Augmenter, augment_config, augment_seed

SIZE = (48, 64)


def lesion_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """A dark image with one bright 6 x 6 lesion off-centre (top left) and its mask."""
    image = torch.full((3, *SIZE), 0.1)
    masks = torch.zeros((2, *SIZE), dtype=torch.bool)
    image[:, 8:14, 10:16] = 0.9
    masks[1, 8:14, 10:16] = True
    return image, masks


def only(**kw) -> AugmentConfig:
    off = dict(flip_prob=0.0, affine_prob=0.0, contrast_prob=0.0, blur_prob=0.0)
    return AugmentConfig(**{**off, **kw})


@pytest.mark.parametrize(
    "config",
    [
        only(flip_prob=1.0),
        only(affine_prob=1.0, rotate_degrees=40.0, scale=0.0, translate=0.0),
        only(affine_prob=1.0, rotate_degrees=15.0, scale=0.2, translate=0.1),
        AugmentConfig(),
    ],
    ids=["flip", "rotate", "affine", "report"],
)
def test_mask_follows_the_drawn_lesion(config):
    image, masks = lesion_sample()
    moved = 0
    for index in range(6):
        aug = Augmenter(config=config, size=SIZE, seed=0)
        new_image, new_masks = aug(image, masks, epoch=0, index=index)
        assert new_image.shape == image.shape and new_masks.dtype == torch.bool
        lesion = new_image[0] > 0.5  # where the bright lesion was drawn after the transform
        mask = new_masks[1]
        assert not new_masks[0].any()  # an empty channel stays empty
        inter = (lesion & mask).sum().item()
        union = (lesion | mask).sum().item()
        assert lesion.sum() >= 16 and inter / union > 0.6, (index, inter, union)
        moved += not torch.equal(mask, masks[1])
    assert moved >= 3  # the transform did move the lesion (not a trivial pass)


def test_one_pixel_lesion_survives_rotation():
    masks = torch.zeros((1, *SIZE), dtype=torch.bool)
    masks[0, 20, 30] = True
    aug = Augmenter(config=only(affine_prob=1.0, scale=0.1), size=SIZE, seed=0)
    for index in range(20):
        _, out = aug(torch.zeros((3, *SIZE)), masks, epoch=0, index=index)
        assert 1 <= out.sum() <= 4, index


def test_seeded_per_epoch_and_sample():
    image, masks = lesion_sample()
    image = image + 0.05 * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    a = Augmenter(config=AugmentConfig(), size=SIZE, seed=3)
    b = Augmenter(config=AugmentConfig(), size=SIZE, seed=3)
    for _ in range(3):  # b advances its transforms first: nothing carries over between calls
        b(image, masks, epoch=1, index=7)
    x1, m1 = a(image, masks, epoch=2, index=5)
    x2, m2 = b(image, masks, epoch=2, index=5)
    assert torch.equal(x1, x2) and torch.equal(m1, m2)
    others = [a(image, masks, epoch=e, index=i)[0] for e, i in ((3, 5), (2, 6))]
    assert all(not torch.equal(x1, o) for o in others)
    assert augment_seed(3, 2, 5) == augment_seed(3, 2, 5) != augment_seed(3, 5, 2)


def test_contrast_and_blur_leave_masks_alone():
    image, masks = lesion_sample()
    cfg = only(contrast_prob=1.0, blur_prob=1.0)
    new_image, new_masks = Augmenter(config=cfg, size=SIZE, seed=0)(image, masks, epoch=0, index=0)
    assert torch.equal(new_masks, masks) and not torch.allclose(new_image, image)
    assert new_image.min() >= 0.0 and new_image.max() <= 1.0


def test_names():
    assert augment_config("none") is None
    assert augment_config("report") == AugmentConfig()
    with pytest.raises(InputError, match="unknown augmentation"):
        augment_config("heavy")
    assert dataclasses.is_dataclass(AugmentConfig) and np.isclose(AugmentConfig().flip_prob, 0.5)


def test_cli_offers_exactly_the_augmentations():
    from medmoe.cli.main import build_parser
    from medmoe.multitask.data.augment import AUGMENTS

    argv = ["fundus", "train", "--data", "synthetic", "--out", "x"]
    assert build_parser().parse_args(argv).augment == "report"
    for name in AUGMENTS:
        assert build_parser().parse_args([*argv, "--augment", name]).augment == name


@pytest.mark.parametrize("size", [(48, 64), (128, 192)])
def test_one_pixel_dots_survive_the_report_ranges(size):
    """The measurement the module docstring states: 30 draws of the report's augmentation, a
    one-pixel dot in the central half of the image each time, none lost."""
    rng = np.random.default_rng(0)
    lost = 0
    for index in range(30):
        masks = torch.zeros((1, *size), dtype=torch.bool)
        y = rng.integers(size[0] // 4, 3 * size[0] // 4)
        x = rng.integers(size[1] // 4, 3 * size[1] // 4)
        masks[0, y, x] = True
        aug = Augmenter(config=AugmentConfig(), size=size, seed=1)
        _, out = aug(torch.zeros((3, *size)), masks, epoch=0, index=index)
        lost += int(out.sum() == 0)
    assert lost == 0
