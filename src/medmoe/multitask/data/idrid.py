"""The IDRiD dataset in its official folder layout.

``A. Segmentation/1. Original Images/{a. Training Set, b. Testing Set}/IDRiD_NN.jpg`` with masks
``A. Segmentation/2. All Segmentation Groundtruths/<split>/{1. Microaneurysms, 2. Haemorrhages,
3. Hard Exudates, 4. Soft Exudates, 5. Optic Disc}/IDRiD_NN_{MA,HE,EX,SE,OD}.tif``, and
``B. Disease Grading/1. Original Images/<split>/IDRiD_NNN.jpg`` with the grades in
``B. Disease Grading/2. Groundtruths/{a. IDRiD_Disease Grading_Training Labels.csv,
b. IDRiD_Disease Grading_Testing Labels.csv}``.

Three details the reference code gets wrong or leaves implicit:
- the DME column of the grading CSV is named ``'Risk of macular edema '``, with a trailing space;
- a lesion mask that is missing means "no lesion of that type": an all-negative mask;
- masks are binarised from their colour channels; some are RGBA (``IDRiD_81_EX.tif``) and the
  alpha channel is not the label, so it is dropped before binarising.
Photographs and masks enter the model's frame together (:mod:`~medmoe.multitask.data.fov`: the
field of view padded to the model's aspect, then resized), as ``fundus predict`` does.
The segmentation and grading images are different photographs, so a sample carries either
masks or grades, never both.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from medmoe.errors import InputError
from medmoe.multitask.constants import LESIONS
from medmoe.multitask.data.fov import FovFrame, photo_frame

SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}
LESION_DIRS = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
GRADE_CSV = {
    "train": "a. IDRiD_Disease Grading_Training Labels.csv",
    "test": "b. IDRiD_Disease Grading_Testing Labels.csv",
}
DME_COLUMN = "Risk of macular edema "  # sic: trailing space in the official file
log = logging.getLogger(__name__)


class SegSample(NamedTuple):
    image: Path
    masks: dict[str, Path | None]  # None: no mask file, i.e. no lesion of that type


class GradeSample(NamedTuple):
    image: Path
    dr: int
    dme: int


def binarize_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """A bool mask from a (possibly RGBA or palette) label image; a missing file is all negative.
    ``size`` is ``(height, width)``."""
    if path is None:
        return np.zeros(size, dtype=bool)
    with Image.open(path) as im:
        if im.mode == "P":
            im = im.convert("RGB")
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)  # the colour channels; the alpha channel is not the label
    return arr > 0


def segmentation_samples(root: str | os.PathLike, split: str = "train") -> list[SegSample]:
    root = Path(root)
    img_dir = root / "A. Segmentation" / "1. Original Images" / SPLITS[split]
    gt_dir = root / "A. Segmentation" / "2. All Segmentation Groundtruths" / SPLITS[split]
    if not img_dir.is_dir():
        raise InputError(f"{root}: not an IDRiD folder (missing {img_dir})")
    if not gt_dir.is_dir():  # every mask would silently be empty
        raise InputError(f"{root}: the segmentation ground truth is missing ({gt_dir})")
    out = []
    missing = dict.fromkeys(LESIONS, 0)
    for img in sorted(img_dir.glob("IDRiD_*.jpg")):
        masks = {}
        for lesion in LESIONS:
            p = gt_dir / LESION_DIRS[lesion] / f"{img.stem}_{lesion}.tif"
            masks[lesion] = p if p.is_file() else None
            missing[lesion] += masks[lesion] is None
        out.append(SegSample(img, masks))
    for lesion, n in missing.items():
        if n:  # the official set has no SE masks for some images: say how many became empty
            log.warning(
                "IDRiD %s: %s masks missing for %d images: treated as empty", split, lesion, n
            )
    return out


def grading_samples(root: str | os.PathLike, split: str = "train") -> list[GradeSample]:
    root = Path(root)
    csv_path = root / "B. Disease Grading" / "2. Groundtruths" / GRADE_CSV[split]
    img_dir = root / "B. Disease Grading" / "1. Original Images" / SPLITS[split]
    if not csv_path.is_file():
        raise InputError(f"{root}: not an IDRiD folder (missing {csv_path})")
    out = []
    # utf-8-sig: a file saved with a byte-order mark would name its first column
    # "\ufeffImage name", and every row would be skipped without a word
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        for column in ("Image name", "Retinopathy grade", DME_COLUMN):
            if column not in (reader.fieldnames or []):
                raise InputError(f"{csv_path}: no {column!r} column (found {reader.fieldnames})")
        for row in reader:
            name = (row.get("Image name") or "").strip()
            if not name:
                continue
            out.append(
                GradeSample(
                    img_dir / f"{name}.jpg",
                    _grade(row, "Retinopathy grade", csv_path),
                    _grade(row, DME_COLUMN, csv_path),
                )
            )
    if not out:
        raise InputError(f"{csv_path}: no graded images in the file")
    return out


def _grade(row: dict, column: str, csv_path: Path) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise InputError(
            f"{csv_path}: image {row.get('Image name')!r} has no integer {column.strip()!r}"
        ) from None


def photo_frame_of(path: Path, size: tuple[int, int]) -> FovFrame:
    """The model's frame of the photograph at ``path`` (its field of view padded to the aspect
    of ``size``; see :mod:`~medmoe.multitask.data.fov`)."""
    with Image.open(path) as im:
        return photo_frame(im, size)


def load_framed(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, FovFrame]:
    """``(3, H, W)`` float32 in [0, 1] at ``size`` = (height, width): the photograph's field of
    view padded to that aspect and resized (never stretched), with its frame."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    frame = photo_frame(im, size)
    return frame.image(im), frame


def load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The image of :func:`load_framed`."""
    return load_framed(path, size)[0]


def load_native_masks(sample: SegSample) -> np.ndarray:
    """``(5, H, W)`` bool at the photograph's own size, read from the original mask files (no
    resizing): what the IDRiD challenge scores against. A mask of another size is refused."""
    with Image.open(sample.image) as im:
        width, height = im.size
    out = []
    for lesion in LESIONS:
        mask = binarize_mask(sample.masks[lesion], (height, width))
        if mask.shape != (height, width):
            raise InputError(
                f"{sample.masks[lesion]}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                f"its photograph {sample.image.name} {width}x{height}"
            )
        out.append(mask)
    return np.stack(out)


def load_masks(
    sample: SegSample, size: tuple[int, int], frame: FovFrame | None = None
) -> np.ndarray:
    """``(5, H, W)`` bool in the photograph's frame (``frame``, else its own, as
    :func:`load_framed`), downsized with max pooling (a pixel is positive if any source pixel
    under it is), so that 1-pixel microaneurysms survive; see
    :func:`~medmoe.multitask.data.preprocess.resize_mask`."""
    out = []
    for lesion in LESIONS:
        path = sample.masks[lesion]
        if path is None:
            out.append(np.zeros(size, bool))
            continue
        if frame is None:
            frame = photo_frame_of(sample.image, size)
        out.append(frame.mask(binarize_mask(path, (0, 0))))
    return np.stack(out)
