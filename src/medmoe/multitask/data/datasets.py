"""Fundus torch datasets: the photographs of a split, with their grades or lesion masks.

A split (:mod:`~medmoe.multitask.data.splits`) is a :class:`FundusData`: a :class:`GradingSet`
(photographs with a DR grade and a DME risk) and a :class:`SegmentationSet` (other photographs
with five lesion masks); in IDRiD the two are different photographs, so a sample carries grades
or masks, never both. Both sets are ``torch.utils.data.Dataset``\\ s of ``(3, H, W)`` float32
images in [0, 1] (not normalised: the model's
:class:`~medmoe.multitask.model.moe.MultiTaskConfig` holds the mean/std, applied on the device
by :func:`~medmoe.multitask.data.preprocess.normalize`). Synthetic sets hold their few arrays in
memory, drawn in the model's frame; IDRiD sets read each photograph when a batch needs it and
bring it into the model's frame (:mod:`~medmoe.multitask.data.fov`: the field of view padded to
the model's aspect, then resized), masks alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medmoe.errors import InputError
from medmoe.multitask.data.fov import FovFrame
from medmoe.multitask.data.idrid import (
    load_framed,
    load_masks,
    load_native_masks,
    load_rgb,
    photo_frame_of,
)


class GradingSet(Dataset):
    """Photographs with grades. ``images``: a ``(N, 3, H, W)`` array, or a list of files read
    and resized to ``size`` on access."""

    def __init__(
        self,
        *,
        images: np.ndarray | Sequence[Path],
        dr: np.ndarray,
        dme: np.ndarray,
        size: tuple[int, int],
    ) -> None:
        self.images, self.size = images, tuple(size)
        self.dr, self.dme = np.asarray(dr, np.int64), np.asarray(dme, np.int64)
        if not len(self.images) == len(self.dr) == len(self.dme):
            raise InputError("grading set: images, DR grades and DME risks differ in number")

    def __len__(self) -> int:
        return len(self.dr)

    def image(self, i: int) -> np.ndarray:
        if isinstance(self.images, np.ndarray):
            return self.images[i]
        return load_rgb(self.images[i], self.size)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": torch.from_numpy(np.ascontiguousarray(self.image(i), np.float32)),
            "dr": int(self.dr[i]),
            "dme": int(self.dme[i]),
        }


class SegmentationSet(Dataset):
    """Photographs with lesion masks ``(5, H, W)`` bool. ``images``/``masks``: arrays, or (IDRiD)
    ``images`` a list of :class:`~medmoe.multitask.data.idrid.SegSample` and ``masks`` None."""

    def __init__(
        self, *, images: np.ndarray | Sequence, masks: np.ndarray | None, size: tuple[int, int]
    ) -> None:
        self.images, self.masks, self.size = images, masks, tuple(size)
        if masks is not None and len(masks) != len(images):
            raise InputError("segmentation set: images and masks differ in number")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.masks is not None:
            return self.images[i], self.masks[i]
        image, frame = load_framed(self.images[i].image, self.size)
        return image, load_masks(self.images[i], self.size, frame)

    def native_image(self, i: int) -> np.ndarray:
        """``(3, H0, W0)`` float32 in [0, 1]: photograph ``i`` at its own size (for figures)."""
        if self.masks is not None:
            return np.asarray(self.images[i], np.float32)
        with Image.open(self.images[i].image) as im:
            return np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0

    def frame(self, i: int) -> FovFrame:
        """Where photograph ``i``'s model input lies on its native pixels: IDRiD's field of view
        padded to the model's aspect; arrays are drawn in the model's frame (the whole image)."""
        if self.masks is not None:
            return FovFrame.whole(tuple(self.masks[i].shape[-2:]), self.size)
        return photo_frame_of(self.images[i].image, self.size)

    def native_masks(self, i: int) -> np.ndarray:
        """``(5, H0, W0)`` bool at the photograph's native resolution, for scoring: IDRiD's
        original mask files (not the max-pooled training targets); arrays as they are held."""
        if self.masks is not None:
            return np.asarray(self.masks[i], bool)
        return load_native_masks(self.images[i])

    def __getitem__(self, i: int) -> dict:
        image, masks = self.sample(i)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, np.float32)),
            "masks": torch.from_numpy(np.ascontiguousarray(masks, bool)),
        }


class FundusData(NamedTuple):
    grading: GradingSet
    segmentation: SegmentationSet
