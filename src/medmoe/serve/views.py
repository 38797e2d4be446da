"""What the page shows: three orthogonal views of a scan, slices as PNG, masks as packed bits.

Pure functions, no web framework: the server calls them and the tests check them against
hand-built volumes. Views are defined on the scan's own voxel grid (nothing is resampled, so a
click lands on exactly one voxel): the voxel axis closest to the world S axis is the axial slice
axis, A the coronal one and R the sagittal one. Screen directions follow the radiological
convention of 3D Slicer and OHIF: patient right on the screen's left, anterior up in axial,
superior up in coronal and sagittal, anterior on the left in sagittal.
"""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np

from medmoe.errors import InputError

VIEWS = ("axial", "coronal", "sagittal")
# For each view: (world axis sliced, world axis along screen x, world axis along screen y,
# direction of increasing screen x, of increasing screen y), world axes 0=R 1=A 2=S.
_LAYOUT = {
    "axial": (2, 0, 1, -1, -1),  # x runs to the patient's left, y (down) to posterior
    "coronal": (1, 0, 2, -1, -1),  # x to the left, y (down) to inferior
    "sagittal": (0, 1, 2, -1, -1),  # x to posterior, y (down) to inferior
}


@dataclass(frozen=True)
class ViewGeometry:
    """How one view maps screen pixels to voxel indices.

    Pixel ``(x, y)`` of slice ``index`` is voxel ``v`` with ``v[slice_axis] = index``,
    ``v[x_axis] = (n_x - 1 - x) if x_flip else x`` and likewise for y.
    """

    name: str
    slice_axis: int
    x_axis: int
    y_axis: int
    x_flip: bool
    y_flip: bool
    n_slices: int
    width: int
    height: int
    pixel_width_mm: float  # for the page to keep the aspect ratio
    pixel_height_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


def view_geometry(shape: tuple[int, int, int], affine: np.ndarray) -> dict[str, ViewGeometry]:
    """The three views of a ``shape`` volume with voxel-to-world ``affine`` (RAS+)."""
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    axis_of = {int(w): v for v, (w, _) in enumerate(ornt)}  # world axis -> voxel axis
    sign_of = {int(w): float(s) for w, s in ornt}  # +1: increasing index runs towards +world
    spacing = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    views = {}
    for name, (ws, wx, wy, dx, dy) in _LAYOUT.items():
        vx, vy = axis_of[wx], axis_of[wy]
        views[name] = ViewGeometry(
            name=name,
            slice_axis=axis_of[ws],
            x_axis=vx,
            y_axis=vy,
            x_flip=sign_of[wx] != dx,
            y_flip=sign_of[wy] != dy,
            n_slices=int(shape[axis_of[ws]]),
            width=int(shape[vx]),
            height=int(shape[vy]),
            pixel_width_mm=float(spacing[vx]),
            pixel_height_mm=float(spacing[vy]),
        )
    return views


def slice_array(volume: np.ndarray, view: ViewGeometry, index: int) -> np.ndarray:
    """The ``(height, width)`` screen image of slice ``index``."""
    if not 0 <= index < view.n_slices:
        raise InputError(f"{view.name} slice {index} is outside 0..{view.n_slices - 1}")
    plane = np.take(volume, index, axis=view.slice_axis)
    # the two remaining axes keep their order; put y first
    rest = [a for a in range(3) if a != view.slice_axis]
    if rest.index(view.y_axis) != 0:
        plane = plane.T
    if view.y_flip:
        plane = plane[::-1]
    if view.x_flip:
        plane = plane[:, ::-1]
    return plane


def default_window(volume: np.ndarray) -> tuple[float, float]:
    """``(window, level)`` spanning the 0.5-99.5th percentiles (of a subsample, for speed)."""
    flat = volume.ravel()
    step = max(1, flat.size // 1_000_000)
    lo, hi = np.percentile(flat[::step], [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return float(hi - lo), float((hi + lo) / 2)


def to_png(plane: np.ndarray, *, window: float, level: float) -> bytes:
    """A grey PNG of ``plane`` with window/level (values ``level +- window/2`` map to 0..255)."""
    from PIL import Image

    if not (np.isfinite(window) and np.isfinite(level)) or window <= 0:
        raise InputError(f"window must be > 0 and level finite, got {window}, {level}")
    grey = np.clip((plane.astype(np.float64) - (level - window / 2)) / window, 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray(np.rint(grey * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def pack_mask(mask: np.ndarray) -> str:
    """A boolean array as base64 of its bits in C order, most significant bit first."""
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool).ravel())).decode("ascii")


def unpack_mask(data: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_mask`."""
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8), count=n)
    return bits.reshape(shape).astype(bool)
