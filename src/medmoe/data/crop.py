"""The published model's input convention as one reversible transform: :class:`Sam3DCrop`.

SAM-Med3D was trained on volumes reoriented to canonical RAS, resampled to 1.5 mm isotropic,
cropped or zero-padded to 128^3 around the object, and z-score normalised with statistics from
the voxels > 0. The first three steps are one geometric map: a 128^3 grid of 1.5 mm voxels whose
axes are R, A and S, placed in world space around a region of interest. medmoe resamples the scan
straight onto that grid with nibabel (one interpolation instead of two, linear for images,
nearest for labels); voxels outside the scan are zero, which is the published zero padding. The
grid's affine is all that is needed to map a prediction back onto the original voxels, so
:meth:`Sam3DCrop.invert` is exact up to interpolation.

Crop coordinates index ``crop.image[i, j, k]`` (i along R, j along A, k along S): exactly the
convention :class:`medmoe.sam3d.Sam3DPredictor` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from medmoe.data.prompts import check_box, check_points, voxel_to_world, world_to_voxel
from medmoe.data.volume import Volume
from medmoe.errors import InputError

DEFAULT_SIZE = 128
DEFAULT_SPACING = 1.5
LOGIT_FILL = -20.0  # logit given to original voxels that no crop covers when inverting logits


def grid_affine(origin_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Affine of an RAS-aligned grid whose voxel (0, 0, 0) sits at ``origin_mm``."""
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = origin_mm
    return affine


def resample(
    array: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, ...],
    target: np.ndarray,
    *,
    order: int,
    cval: float = 0.0,
) -> np.ndarray:
    """Resample ``array`` (with ``affine``) onto the grid ``(shape, target)`` with nibabel."""
    img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine)
    out = resample_from_to(img, (tuple(shape), target), order=order, mode="constant", cval=cval)
    return np.asarray(out.dataobj, dtype=np.float32)


def zscore_foreground(image: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` over the whole crop, with mean and std taken from the voxels > 0.

    Written by hand because it differs from MONAI's ``NormalizeIntensity(nonzero=True)``, which
    leaves the zero voxels at 0: the published pipeline (torchio ``ZNormalization`` with a
    ``x > 0`` mask) shifts every voxel, background included.
    """
    fg = image[image > 0]
    if fg.size < 2:
        fg = image.ravel()
    mean, std = float(fg.mean()), float(fg.std())
    return ((image - mean) / (std if std > 0 else 1.0)).astype(np.float32)


@dataclass(frozen=True)
class Sam3DCrop:
    """A 128^3, 1.5 mm, RAS crop of a volume, and the geometry to map results back.

    Build one with :meth:`around_mask`, :meth:`around_point` or :meth:`around_box`.
    """

    image: np.ndarray = field(repr=False)  # (size,)*3 float32, z-scored
    affine: np.ndarray  # the crop grid's voxel-to-world affine
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    clamp: tuple[float, float] | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])

    # --- construction -------------------------------------------------------------------
    @classmethod
    def centered_at(
        cls,
        vol: Volume,
        center_mm: np.ndarray,
        *,
        size: int = DEFAULT_SIZE,
        spacing: float = DEFAULT_SPACING,
        clamp: tuple[float, float] | None = None,
    ) -> Sam3DCrop:
        """The crop whose voxel ``(size // 2,)*3`` lies at world point ``center_mm``."""
        if size < 8 or spacing <= 0:
            raise InputError(f"crop size must be >= 8 and spacing > 0, got {size}, {spacing}")
        origin = np.asarray(center_mm, dtype=np.float64) - spacing * (size // 2)
        return cls.at_origin(vol, origin, size=size, spacing=spacing, clamp=clamp)

    @classmethod
    def at_origin(
        cls,
        vol: Volume,
        origin_mm: np.ndarray,
        *,
        size: int = DEFAULT_SIZE,
        spacing: float = DEFAULT_SPACING,
        clamp: tuple[float, float] | None = None,
    ) -> Sam3DCrop:
        affine = grid_affine(np.asarray(origin_mm, dtype=np.float64), spacing)
        source = np.asarray(vol.array, dtype=np.float32)
        if clamp is not None:  # CT windowing before interpolation, as the published CT presets do
            source = np.clip(source, clamp[0], clamp[1])
        raw = resample(source, vol.affine, (size,) * 3, affine, order=1)
        return cls(
            image=zscore_foreground(raw),
            affine=affine,
            source_shape=tuple(int(s) for s in vol.array.shape),
            source_affine=np.asarray(vol.affine, dtype=np.float64),
            clamp=clamp,
        )

    @classmethod
    def around_point(cls, vol: Volume, ijk, **kwargs) -> Sam3DCrop:
        """Centred on a voxel index ``(i, j, k)`` of ``vol``."""
        point = check_points(np.asarray(ijk, dtype=np.float64).reshape(1, 3), vol.array.shape)
        return cls.centered_at(vol, voxel_to_world(point, vol.affine)[0], **kwargs)

    @classmethod
    def around_box(cls, vol: Volume, box_ijk, **kwargs) -> Sam3DCrop:
        """Centred on (the voxel at) the centre of a voxel box ``(i1, j1, k1, i2, j2, k2)`` of ``vol``."""
        box = check_box(box_ijk, vol.array.shape)
        return cls.around_point(vol, np.floor((box[:3] + box[3:]) / 2), **kwargs)

    @classmethod
    def around_mask(cls, vol: Volume, mask: np.ndarray, **kwargs) -> Sam3DCrop:
        """Centred on the bounding-box centre of a non-empty mask on ``vol``'s grid."""
        mask = np.asarray(mask)
        if mask.shape != vol.array.shape:
            raise InputError(f"mask shape {mask.shape} differs from the image's {vol.array.shape}")
        idx = np.argwhere(mask > 0)
        if idx.size == 0:
            raise InputError("cannot crop around an empty mask")
        # centred on a voxel of the scan, as the published crops are: a centre halfway between
        # voxels can put crop samples exactly between two source voxels (nearest-neighbour ties)
        return cls.around_point(vol, (idx.min(0) + idx.max(0)) // 2, **kwargs)

    # --- mapping into the crop ------------------------------------------------------------
    def apply_label(self, label: np.ndarray) -> np.ndarray:
        """A label map of the source volume, resampled into the crop (nearest neighbour)."""
        label = np.asarray(label)
        if label.shape != self.source_shape:
            raise InputError(
                f"label shape {label.shape} differs from the image's {self.source_shape}"
            )
        out = resample(label, self.source_affine, (self.size,) * 3, self.affine, order=0)
        return np.rint(out).astype(label.dtype if label.dtype != bool else np.uint8)

    def to_crop_coords(self, points_ijk) -> np.ndarray:
        """Source voxel indices ``(N, 3)`` -> crop voxel coordinates ``(N, 3)`` (float)."""
        pts = check_points(points_ijk, self.source_shape)
        world = voxel_to_world(pts, self.source_affine)
        return world_to_voxel(world, self.affine)

    def world_to_crop(self, points_mm) -> np.ndarray:
        return world_to_voxel(np.asarray(points_mm, dtype=np.float64).reshape(-1, 3), self.affine)

    def box_to_crop(self, box_ijk) -> np.ndarray:
        """A source voxel box -> the axis-aligned crop box ``(x1, y1, z1, x2, y2, z2)`` holding it."""
        box = check_box(box_ijk, self.source_shape)
        corners = np.array(
            [
                [box[0 + 3 * a], box[1 + 3 * b], box[2 + 3 * c]]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        pts = self.to_crop_coords(corners)
        lo = np.clip(pts.min(0), 0, self.size - 1)
        hi = np.clip(pts.max(0), 0, self.size - 1)
        return np.concatenate([lo, hi])

    def contains(self, points_crop: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_crop, dtype=np.float64).reshape(-1, 3)
        return ((pts >= 0) & (pts <= self.size - 1)).all(axis=1)

    # --- mapping back ----------------------------------------------------------------------
    def footprint(
        self, box: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The box of source voxels ``[lo, hi)`` (per axis, clipped to the source) that the crop
        overlaps: :meth:`invert` is zero / ``LOGIT_FILL`` everywhere else. ``box=(lo, hi)``
        (crop voxels, half-open) narrows it to the part of the source that can see those voxels
        under linear interpolation (a margin of one crop voxel around them)."""
        lo_c, hi_c = (0, self.size) if box is None else box
        lo_c = np.asarray(lo_c, dtype=float) - (0.5 if box is None else 1.0)
        hi_c = np.asarray(hi_c, dtype=float) - (0.5 if box is None else 0.0)
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
        edges = lo_c + corners * (hi_c - lo_c)
        src = world_to_voxel(voxel_to_world(edges, self.affine), self.source_affine)
        shape = np.asarray(self.source_shape)
        lo = np.clip(np.floor(src.min(0)).astype(int) - 1, 0, shape)
        hi = np.clip(np.ceil(src.max(0)).astype(int) + 2, 0, shape)
        return lo, np.maximum(hi, lo)

    def invert(
        self,
        array: np.ndarray,
        *,
        mode: str = "auto",
        region: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Map a ``(size,)*3`` crop array back onto the source grid (the source's shape).

        ``mode="linear"`` interpolates (logits: voxels outside the crop get ``LOGIT_FILL``);
        ``"nearest"`` copies nearest values. ``"auto"`` (default) treats a boolean or 0/1 mask
        as a soft mask: it is interpolated linearly and thresholded at 0.5, which follows the
        object's surface more closely than nearest-neighbour when the grids differ in spacing.
        ``region=(lo, hi)`` (e.g. :meth:`footprint`) returns only ``source[lo:hi]``.
        """
        array = np.asarray(array)
        if array.shape != (self.size,) * 3:
            raise InputError(f"expected a {(self.size,) * 3} array, got {array.shape}")
        shape, target = self.source_shape, self.source_affine
        if region is not None:
            lo, hi = (np.asarray(r, dtype=int) for r in region)
            shape = tuple(int(n) for n in hi - lo)
            target = self.source_affine @ grid_affine(lo.astype(np.float64), 1.0)
        if mode == "auto":
            binary = array.dtype == bool or np.isin(np.unique(array), (0, 1)).all()
            if binary:
                soft = resample(array.astype(np.float32), self.affine, shape, target, order=1)
                return soft >= 0.5
            mode = "linear"
        if mode == "linear":
            return resample(array, self.affine, shape, target, order=1, cval=LOGIT_FILL)
        if mode == "nearest":
            out = resample(array, self.affine, shape, target, order=0)
            return out.astype(array.dtype)
        raise InputError(f"unknown invert mode {mode!r}; use auto, linear or nearest")
