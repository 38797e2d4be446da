"""One interactive segmentation: a scan, its prompts step by step, undo and reset.

A session segments one object at a time inside one 128^3 crop, placed around its first prompt
(the centre of a box, or the first click), as ``medmoe segment`` does. The crop's embedding is
computed once and kept, so every later click costs only the prompt encoder and the decoders.
A click outside the crop re-places it around all of the object's points
(:mod:`medmoe.serve.placement`); that click is decoded with all the points and no mask prompt
(the previous logits lie in the old crop's frame), and the clicks after it feed back as before.
Each step keeps its crop, its mask in crop space (bit-packed) and its low-resolution logits,
which are fed back as the next click's mask prompt, as in SAM-Med3D's interactive protocol;
undo restores them exactly. Masks go back to the scan's grid only over the crop's footprint.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

from medmoe.data import Sam3DCrop, Volume
from medmoe.data.prompts import check_box, check_points
from medmoe.errors import InputError
from medmoe.serve.engine import Decoded, EmbeddingLRU, Engine
from medmoe.serve.mapback import invert_mask
from medmoe.serve.placement import crop_geometry, crop_image, place
from medmoe.serve.views import ViewGeometry, default_window, pack_mask, view_geometry

MAX_CACHED_EMBEDDINGS = 2  # per session: the current crop and the one before a reset
# SAM-Med3D is used with at most tens of clicks; these bound the decoder's work per request and
# the memory a session keeps (each step holds its packed mask and low-resolution logits)
MAX_POINTS = 100  # clicks of one object, all prompts together
MAX_STEPS = 100  # prompt steps of one session, until reset


def check_point_count(n: int) -> None:
    """Refuse (400) more than :data:`MAX_POINTS` points for one object."""
    if n > MAX_POINTS:
        raise InputError(f"at most {MAX_POINTS} points per object are accepted, got {n}")


def crop_key(crop: Sam3DCrop) -> tuple:
    """What identifies a crop of one scan: its grid's origin (size and spacing are fixed)."""
    return tuple(np.round(crop.affine[:3, 3], 4).tolist())


def mask_bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lo, hi)``, half-open, of a boolean array's true voxels; ``None`` if there are none."""
    lo, hi = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)


@dataclass(frozen=True)
class Step:
    points: np.ndarray  # (N, 3) every click so far, scan voxel indices
    labels: np.ndarray  # (N,) 1 positive, 0 negative
    box: np.ndarray | None  # (6,) scan voxel box, or None
    centre: np.ndarray  # (3,) the scan voxel the step's crop is centred on
    crop: Sam3DCrop  # that crop's geometry (no image)
    mask_bits: np.ndarray  # np.packbits of the (S, S, S) crop-space mask
    decoded: Decoded


@dataclass(frozen=True)
class MaskUpdate:
    """What changed: the new mask over ``[lo, hi)`` of the scan's voxels, and the routing."""

    step: int
    lo: list[int]
    hi: list[int]
    bits: str  # views.pack_mask of the region
    voxels: int  # mask voxels in the whole scan
    expert: str | None
    s_top: float | None
    gate_probs: dict[str, float] | None
    iou: float | None
    encoded: bool  # the image encoder ran for this update

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Session:
    id: str
    directory: Path
    volume: Volume
    name: str  # the upload's file name (display only; never used as a path)
    engine: Engine
    views: dict[str, ViewGeometry] = field(init=False)
    window: tuple[float, float] = field(init=False)
    dicom_headers: list | None = None  # the source series' slices (no pixels) for a DICOM SEG
    steps: list[Step] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _embeddings: EmbeddingLRU = field(
        default_factory=lambda: EmbeddingLRU(capacity=MAX_CACHED_EMBEDDINGS), repr=False
    )

    def __post_init__(self) -> None:
        self.views = view_geometry(self.volume.array.shape, self.volume.affine)
        self.window = default_window(self.volume.array)

    # --- state -------------------------------------------------------------------------------
    def describe(self) -> dict:
        vol = self.volume
        return {
            "id": self.id,
            "name": self.name,
            "shape": [int(n) for n in vol.array.shape],
            "spacing": [float(s) for s in vol.spacing],
            "affine": np.asarray(vol.affine, dtype=float).tolist(),
            "views": {k: v.to_dict() for k, v in self.views.items()},
            "window": self.window[0],
            "level": self.window[1],
            "steps": len(self.steps),
            "dicom": self.dicom_headers is not None,
        }

    def _embedding(self, crop: Sam3DCrop) -> tuple[Tensor, bool]:
        return self._embeddings.get(
            crop_key(crop), lambda: self.engine.encode(crop_image(self.volume, crop))
        )

    @staticmethod
    def _crop_mask(step: Step) -> np.ndarray:
        n = step.crop.size
        return np.unpackbits(step.mask_bits, count=n**3).reshape((n,) * 3).astype(bool)

    def _scan_region(self, changed: list[Step]) -> tuple[np.ndarray, ...]:
        """``lo, hi`` on the scan covering every mask voxel of the ``changed`` steps (each in
        its own crop), and the current mask over it. Only that region is resampled, so a click
        costs the decoders and the object's size, not the crop's whole footprint."""
        boxes = []
        for st in changed:
            box = mask_bbox(self._crop_mask(st))
            if box is not None:
                boxes.append(st.crop.footprint(box))
        if not boxes:
            lo = hi = np.zeros(3, dtype=int)
            return lo, hi, np.zeros((0, 0, 0), dtype=bool)
        lo = np.min([b[0] for b in boxes], 0)
        hi = np.max([b[1] for b in boxes], 0)
        if not self.steps:
            return lo, hi, np.zeros(tuple(hi - lo), dtype=bool)
        current = self.steps[-1]
        return lo, hi, invert_mask(current.crop, self._crop_mask(current), (lo, hi))

    def _update(self, before: Step | None, encoded: bool) -> MaskUpdate:
        """The current mask over the region where it can differ from ``before``'s."""
        step = self.steps[-1] if self.steps else None
        changed = [s for s in (before, step) if s is not None]
        if not changed:
            lo = hi = np.zeros(3, dtype=int)
            region = np.zeros((0, 0, 0), dtype=bool)
        else:
            lo, hi, region = self._scan_region(changed)
        d = step.decoded if step else None
        return MaskUpdate(
            step=len(self.steps),
            lo=[int(v) for v in lo],
            hi=[int(v) for v in hi],
            bits=pack_mask(region),
            voxels=int(region.sum()),  # the region holds all of the current mask
            expert=d.expert if d else None,
            s_top=d.s_top if d else None,
            gate_probs=d.gate_probs if d else None,
            iou=d.iou if d else None,
            encoded=encoded,
        )

    # --- actions -----------------------------------------------------------------------------
    def add_prompt(self, *, points=None, labels=None, box=None) -> MaskUpdate:
        """Add clicks (scan voxel indices, labels 1/0) and/or a box (a new box replaces the old)."""
        if len(self.steps) >= MAX_STEPS:
            raise InputError(f"a session holds at most {MAX_STEPS} steps: undo or reset first")
        shape = self.volume.array.shape
        prev = self.steps[-1] if self.steps else None
        if points is not None:
            check_point_count(len(points) + (len(prev.points) if prev else 0))
        new_pts = np.zeros((0, 3)) if points is None else check_points(points, shape)
        if labels is None:
            labels = np.ones(len(new_pts), dtype=np.int64)
        new_lab = np.asarray(labels)
        if new_lab.shape != (len(new_pts),) or not np.isin(new_lab, (0, 1)).all():
            raise InputError(f"labels must be {len(new_pts)} values, each 1 or 0")
        if box is not None:
            box = check_box(box, shape)
        if len(new_pts) == 0 and box is None:
            raise InputError("give at least one point or a box")
        pts = np.concatenate([prev.points, new_pts]) if prev else new_pts
        lab = np.concatenate([prev.labels, new_lab]).astype(np.int64) if prev else new_lab
        box = box if box is not None else (prev.box if prev else None)
        size = self.engine.size
        centre = place(self.volume, pts, box, size=size, current=prev.centre if prev else None)
        replaced = prev is not None and not np.array_equal(centre, prev.centre)
        crop = (
            prev.crop
            if prev is not None and not replaced
            else crop_geometry(self.volume, centre, size=size)
        )
        crop_pts = crop.to_crop_coords(pts) if len(pts) else None
        features, encoded = self._embedding(crop)
        decoded = self.engine.decode(
            features,
            points=crop_pts,
            labels=lab if crop_pts is not None else None,
            box=crop.box_to_crop(box) if box is not None else None,
            mask_input=prev.decoded.low_res_logits if prev and not replaced else None,
        )
        bits = np.packbits(decoded.mask.ravel())
        kept = dataclasses.replace(decoded, mask=np.zeros(0, dtype=bool))  # the bits hold it
        self.steps.append(Step(pts, lab, box, centre, crop, bits, kept))
        return self._update(prev, encoded)

    def undo(self) -> MaskUpdate:
        if not self.steps:
            raise InputError("nothing to undo")
        return self._update(self.steps.pop(), False)

    def reset(self) -> MaskUpdate:
        before = self.steps[-1] if self.steps else None
        self.steps.clear()
        return self._update(before, False)

    def mask(self) -> np.ndarray:
        """The current mask on the scan's grid, uint8."""
        out = np.zeros(self.volume.array.shape, dtype=np.uint8)
        if self.steps:
            lo, hi, region = self._scan_region(self.steps[-1:])
            out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = region
        return out
