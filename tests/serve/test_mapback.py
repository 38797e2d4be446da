"""serve.mapback: the fast way back from a crop's mask to the scan gives exactly the mask the
old full mapping (``Sam3DCrop.invert`` over the whole scan) gives, voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from tests.serve.conftest import AFFINE

from medmoe.data import Sam3DCrop, Volume, load_volume
from medmoe.serve import mapback
from medmoe.serve.engine import Engine
from medmoe.serve.mapback import invert_mask
from medmoe.serve.monailabel.deepgrow import Deepgrow
from medmoe.serve.session import mask_bbox

ROTATED = np.eye(4)
ROTATED[:3, :3] = 1.2 * np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1]])
AFFINES = {
    "LSA, anisotropic (the serve tests' scan)": AFFINE,
    "RAS 2 mm": np.diag([2.0, 2.0, 2.0, 1.0]),
    "LPS 0.75 x 0.75 x 3 mm (ties: 0.5 steps)": np.diag([-0.75, -0.75, 3.0, 1.0]),
    "LAS 1 mm (the MNI template's)": np.array(
        [[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]]
    ),
    "oblique (goes to invert)": ROTATED,
}


def _masks(rng) -> list[np.ndarray]:
    blobs = ndimage.gaussian_filter(rng.normal(size=(128,) * 3), 2) > 0
    ball = np.linalg.norm(np.indices((128,) * 3).transpose(1, 2, 3, 0) - 60, axis=-1) < 30
    cube = np.zeros((128,) * 3, dtype=bool)
    cube[0:64, 10:128, 5:90] = True  # touches the crop's edges
    return [blobs, ball, cube, np.ones((128,) * 3, dtype=bool)]


@pytest.mark.parametrize("name", list(AFFINES))
def test_same_as_the_full_mapping(name):
    rng = np.random.default_rng(7)
    shape = (90, 70, 40) if "3 mm" in name else (70, 64, 60)
    vol = Volume(array=rng.normal(size=shape).astype(np.float32), affine=AFFINES[name])
    crop = Sam3DCrop.around_point(vol, np.array(shape) // 2 + 3)
    for mask in _masks(rng):
        full = crop.invert(mask)  # the old mapping: the whole scan
        lo, hi = crop.footprint(mask_bbox(mask))
        got = invert_mask(crop, mask, (lo, hi))
        assert got.dtype == bool and got.shape == tuple(hi - lo)
        expected = full[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        assert np.array_equal(got, expected), name
        assert full.sum() == expected.sum()  # nothing of the mask lies outside the footprint
        assert full.sum() > 0


def test_ties_are_left_to_scipy(monkeypatch):
    """With 0.75 mm voxels many values are exactly 0.5: those are interpolated again by scipy
    itself (the separable sums happen to agree there too; the band is a safety net)."""
    rng = np.random.default_rng(1)
    vol = Volume(array=np.zeros((60, 60, 30), np.float32), affine=AFFINES[list(AFFINES)[2]])
    crop = Sam3DCrop.around_point(vol, [30, 30, 15])
    mask = _masks(rng)[0]
    calls = []
    real = ndimage.map_coordinates
    monkeypatch.setattr(
        mapback.ndimage,
        "map_coordinates",
        lambda a, p, **k: calls.append(p.shape) or real(a, p, **k),
    )
    lo, hi = crop.footprint(mask_bbox(mask))
    assert np.array_equal(invert_mask(crop, mask, (lo, hi)), crop.invert(mask, region=(lo, hi)))
    assert calls and calls[0][1] > 0  # some voxels were exact ties


def test_monailabel_label_equals_the_old_full_mapping(tiny_predictor, scan_path):
    """Deepgrow's label for two clicks: what the old code computed, ``invert`` of the decoded
    mask over the whole scan."""
    vol = load_volume(scan_path)
    deepgrow = Deepgrow(engine=Engine(predictor=tiny_predictor), capacity=2)
    fg, bg = [[30, 20, 25], [34, 22, 27]], [[38, 20, 40]]
    label, decoded, _ = deepgrow(vol, "k", fg, bg)
    crop = Sam3DCrop.around_point(vol, np.array(fg[0], dtype=float))
    old = crop.invert(decoded.mask).astype(np.uint8)
    assert label.dtype == np.uint8 and 0 < old.sum() < old.size
    assert np.array_equal(label, old)
