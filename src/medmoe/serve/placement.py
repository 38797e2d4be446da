"""Where an object's 128^3 crop lies: around its first prompt, and around all of its points once
a correction falls outside it.

SAM-Med3D sees one 128^3 crop of 1.5 mm voxels (192 mm a side). A crop is first centred on the
box's centre voxel, or on the first click, as ``medmoe segment`` centres it. A click outside
that crop (a correction at the far end of a large organ) re-places the crop: centred on the
middle of the bounding box, in world space, of all the object's points (and the box's centre),
so that every point lies inside it. Only points spread over more than one crop (over ~190 mm
on an axis) are refused.

Crops are placed by geometry alone (:func:`crop_geometry`, no resampling); the image is
resampled only when a crop's embedding is not cached (:func:`crop_image`).
"""

from __future__ import annotations

import numpy as np

from medmoe.data import Sam3DCrop, Volume
from medmoe.data.crop import DEFAULT_SPACING, grid_affine
from medmoe.data.prompts import voxel_to_world, world_to_voxel
from medmoe.errors import InputError


def crop_geometry(volume: Volume, centre_ijk: np.ndarray, *, size: int) -> Sam3DCrop:
    """The crop :meth:`Sam3DCrop.around_point` builds at ``centre_ijk``, without its image (a
    read-only zero array stands for it): what maps points in and masks back."""
    return Sam3DCrop(
        image=np.broadcast_to(np.float32(0), (size,) * 3),
        affine=_affine(volume, centre_ijk, size=size),
        source_shape=tuple(int(n) for n in volume.array.shape),
        source_affine=np.asarray(volume.affine, dtype=np.float64),
    )


def crop_image(volume: Volume, geometry: Sam3DCrop) -> np.ndarray:
    """The z-scored image of the crop ``geometry`` (``Sam3DCrop.at_origin`` at its origin)."""
    full = Sam3DCrop.at_origin(
        volume, geometry.affine[:3, 3], size=geometry.size, spacing=geometry.spacing
    )
    return full.image


def _affine(volume: Volume, centre_ijk: np.ndarray, *, size: int) -> np.ndarray:
    centre = voxel_to_world(np.asarray(centre_ijk, dtype=np.float64), volume.affine)[0]
    return grid_affine(centre - DEFAULT_SPACING * (size // 2), DEFAULT_SPACING)


def _fits(volume: Volume, centre_ijk: np.ndarray, points: np.ndarray, *, size: int) -> bool:
    if not len(points):
        return True
    affine = _affine(volume, centre_ijk, size=size)
    inside = world_to_voxel(voxel_to_world(points, volume.affine), affine)
    return bool(((inside >= 0) & (inside <= size - 1)).all())


def first_centre(points: np.ndarray, box: np.ndarray | None) -> np.ndarray:
    """The voxel the first crop is centred on: the box's centre voxel (as
    :meth:`Sam3DCrop.around_box`), else the first point."""
    if box is not None:
        return np.floor((box[:3] + box[3:]) / 2)
    return np.asarray(points[0], dtype=np.float64)


def place(
    volume: Volume,
    points: np.ndarray,
    box: np.ndarray | None,
    *,
    size: int,
    current: np.ndarray | None = None,
) -> np.ndarray:
    """The centre voxel of the crop for ``points`` ``(N, 3)`` and ``box`` (scan voxels):
    ``current`` (the object's crop so far; by default the first prompt's) while every point
    lies inside it, else the crop around all of them; an :class:`InputError` when they do not
    fit in one crop."""
    centre = first_centre(points, box) if current is None else np.asarray(current, np.float64)
    if _fits(volume, centre, points, size=size):
        return centre
    anchors = points if box is None else np.vstack([points, first_centre(points, box)[None]])
    world = voxel_to_world(anchors, volume.affine)
    middle = (world.min(0) + world.max(0)) / 2
    ijk = np.rint(world_to_voxel(middle, volume.affine)[0])
    centre = np.clip(ijk, 0, np.asarray(volume.array.shape) - 1)
    if not _fits(volume, centre, points, size=size):
        raise InputError(
            f"the points spread over more than one {size}^3 crop "
            f"({size * DEFAULT_SPACING:.0f} mm a side): segment the object in parts"
        )
    return centre
