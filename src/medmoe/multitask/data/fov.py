"""The model's frame of a fundus photograph: its field of view, padded to the model's aspect.

A fundus photograph is a bright disc (the field of view, FOV) on a black surround, at any size
and aspect ratio (IDRiD: 4288 x 2848 with the disc cut at top and bottom; skimage's
``retina.jpg``: 1411 x 1411). Resizing the whole photograph to the model's input size stretches
it whenever the aspect ratios differ (a 1411² photograph became 64 x 96). Instead:

1. :func:`fov_box`: the disc's bounding box, found by thresholding (a pixel is in the FOV if its
   brightest channel exceeds ``FOV_THRESHOLD``; a row or a column is in the box if more than
   ``FOV_LINE_FRACTION`` of its pixels are, so that JPEG noise in the surround does not count);
2. :func:`fov_frame`: that box padded symmetrically to the model's aspect ratio (square for a
   square model) around the box's centre. The padded window may reach outside the photograph;
   the pixels there are black, the colour of the surround;
3. the window resized to the model's input size (:meth:`FovFrame.image`, :meth:`FovFrame.mask`).

:meth:`FovFrame.to_source` maps model-frame maps (lesion probabilities) back onto the
photograph's own pixels (zero outside the window). IDRiD's training and evaluation (via
:mod:`~medmoe.multitask.data.idrid`) and ``medmoe fundus predict`` use the same frame, so the
model sees a photograph the same way in training and in prediction. The synthetic photographs
are drawn in that frame already (a centred disc of radius 0.47 of the short side); through
:func:`fov_frame` a synthetic photograph is enlarged by 128 / 121 = 1.058 (at 128 x 192), within the training
augmentation's +-10 % scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from medmoe.multitask.data.preprocess import resize_mask

FOV_THRESHOLD = 0.08  # of full scale: the black surround of a JPEG stays below ~0.04
FOV_LINE_FRACTION = 0.01  # a row/column with more FOV pixels than this share is inside the box


def fov_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (half-open) of the field of view of an ``(H, W, 3)`` image,
    uint8 or float in [0, 1]; the whole image when no row or column passes (no dark surround,
    or an all-dark image)."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"fov_box: expected an (H, W, 3) image, got shape {rgb.shape}")
    scale = 255.0 if rgb.dtype == np.uint8 else 1.0
    bright = rgb.max(axis=-1) > FOV_THRESHOLD * scale
    h, w = bright.shape
    rows = np.flatnonzero(bright.sum(axis=1) > FOV_LINE_FRACTION * w)
    cols = np.flatnonzero(bright.sum(axis=0) > FOV_LINE_FRACTION * h)
    if rows.size == 0 or cols.size == 0:
        return 0, h, 0, w
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@dataclass(frozen=True)
class FovFrame:
    """Where the model's input lies in a photograph.

    ``source``: the photograph's (height, width); ``window``: (top, left, height, width) in the
    photograph's pixels, possibly reaching outside it; ``size``: the model's input (height,
    width), of the window's aspect ratio up to rounding."""

    source: tuple[int, int]
    window: tuple[int, int, int, int]
    size: tuple[int, int]

    @classmethod
    def whole(cls, source: tuple[int, int], size: tuple[int, int]) -> FovFrame:
        """The whole photograph resized to ``size`` (images already in the model's frame)."""
        return cls(source=tuple(source), window=(0, 0, *source), size=tuple(size))

    def image(self, photo: Image.Image) -> np.ndarray:
        """``(3, h, w)`` float32 in [0, 1]: the window of ``photo``, black outside it, resized
        (bilinear, antialiased when shrinking) to ``size``."""
        top, left, height, width = self.window
        im = photo.convert("RGB")
        if self.window != (0, 0, im.height, im.width):
            im = im.crop((left, top, left + width, top + height))  # black outside the photograph
        im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
        return np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A bool ``(H, W)`` mask of the photograph -> ``(h, w)`` in the frame, resized with max
        pooling (:func:`~medmoe.multitask.data.preprocess.resize_mask`)."""
        return resize_mask(self._window_of(np.asarray(mask, bool)), self.size)

    def _window_of(self, mask: np.ndarray) -> np.ndarray:
        top, left, height, width = self.window
        out = np.zeros((height, width), mask.dtype)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + height, mask.shape[0]), min(left + width, mask.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - top : y1 - top, x0 - left : x1 - left] = mask[y0:y1, x0:x1]
        return out

    def to_source(self, maps: Tensor) -> Tensor:
        """``(C, h, w)`` maps in the frame -> ``(C, H, W)`` on the photograph's pixels: resized
        to the window (bilinear) and placed there; zero where the window does not reach."""
        top, left, height, width = self.window
        maps = maps.float()
        if tuple(maps.shape[-2:]) != (height, width):
            maps = F.interpolate(
                maps[None], size=(height, width), mode="bilinear", align_corners=False
            )[0]
        if self.window == (0, 0, *self.source):
            return maps
        out = maps.new_zeros((maps.shape[0], *self.source))
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + height, self.source[0]), min(left + width, self.source[1])
        if y1 > y0 and x1 > x0:
            out[:, y0:y1, x0:x1] = maps[:, y0 - top : y1 - top, x0 - left : x1 - left]
        return out


def fov_frame(
    box: tuple[int, int, int, int], *, source: tuple[int, int], size: tuple[int, int]
) -> FovFrame:
    """The frame of a photograph of ``source`` (height, width) whose FOV is ``box`` (see
    :func:`fov_box`) for a model of input ``size``: the box padded, about its centre, to the
    aspect ratio of ``size``."""
    top, bottom, left, right = box
    bh, bw = bottom - top, right - left
    if bh <= 0 or bw <= 0:
        raise ValueError(f"fov_frame: empty box {box}")
    aspect = size[1] / size[0]  # width / height
    if bw < bh * aspect:  # pad the sides (rounding keeps width >= bw)
        height, width = bh, round(bh * aspect)
    else:  # pad above and below
        height, width = round(bw / aspect), bw
    cy, cx = (top + bottom) / 2, (left + right) / 2
    window = (int(np.floor(cy - height / 2)), int(np.floor(cx - width / 2)), height, width)
    return FovFrame(source=tuple(source), window=window, size=tuple(size))


def photo_frame(photo: Image.Image, size: tuple[int, int]) -> FovFrame:
    """The frame of ``photo`` (a PIL image) for a model of input ``size``."""
    rgb = np.asarray(photo.convert("RGB"))
    return fov_frame(fov_box(rgb), source=rgb.shape[:2], size=size)
