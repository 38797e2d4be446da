from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medmoe.data import Sam3DCrop, Volume, load_volume, save_volume, voxel_to_world
from medmoe.errors import InputError


def las_volume(shape=(200, 220, 30), spacing=(0.8, 0.8, 5.0)):
    """A LAS-oriented (x flipped) anisotropic scan with the world grid of every voxel."""
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [100.0, -90.0, -40.0]
    assert nib.aff2axcodes(affine) == ("L", "A", "S")
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    image = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    return Volume(image, affine), world


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize(
    "kind, size_mm",
    [("sphere", 20.0), ("sphere", 40.0), ("cube", 24.0)],
)
def test_label_round_trip_keeps_shape_affine_and_dice(kind, size_mm):
    vol, world = las_volume()
    center = np.array([30.0, 0.0, 20.0])
    if kind == "sphere":
        label = np.linalg.norm(world - center, axis=-1) <= size_mm / 2
    else:
        label = (np.abs(world - center) <= size_mm / 2).all(-1)
    crop = Sam3DCrop.around_mask(vol, label)
    assert crop.image.shape == (128, 128, 128) and crop.image.dtype == np.float32
    assert np.allclose(np.diag(crop.affine)[:3], 1.5)
    in_crop = crop.apply_label(label.astype(np.uint8))
    # The object is fully inside the crop: its volume in mm^3 is preserved to a few percent.
    assert abs(in_crop.sum() * 1.5**3 - label.sum() * 0.8 * 0.8 * 5.0) < 0.1 * label.sum() * 3.2
    back = crop.invert(in_crop)
    assert back.shape == label.shape
    assert dice(back, label) >= 0.95


def test_crop_axes_are_ras():
    vol, world = las_volume()
    label = np.linalg.norm(world - np.array([30.0, 0.0, 20.0]), axis=-1) <= 10
    crop = Sam3DCrop.around_mask(vol, label)
    # Moving +1 along crop axis 0 moves +1.5 mm towards Right... i.e. +x in RAS world.
    p = crop.to_crop_coords(np.array([[10.0, 10.0, 10.0], [9.0, 10.0, 10.0]]))
    # source i+1 moves 0.8 mm towards L (x decreases): crop i decreases by 0.8 / 1.5
    assert np.allclose(p[0] - p[1], [-0.8 / 1.5, 0, 0])


def test_zscore_uses_foreground_statistics():
    vol, world = las_volume()
    vol.array[:] = 0
    vol.array[world[..., 0] > 30] = 10.0
    vol.array[world[..., 0] > 40] = 20.0
    crop = Sam3DCrop.around_point(vol, (60, 110, 15))
    raw_fg = crop.image[crop.image > crop.image.min()]
    # two foreground levels (10, 20) and background 0 -> after z-scoring with fg statistics the
    # foreground has mean ~0 and std ~1, and background sits below it.
    assert abs(float(raw_fg.mean())) < 0.2 and abs(float(raw_fg.std()) - 1) < 0.2


def test_point_outside_image_is_refused():
    vol, _ = las_volume()
    with pytest.raises(InputError, match="outside the image"):
        Sam3DCrop.around_point(vol, (500, 5, 5))
    with pytest.raises(InputError, match="inverted box"):
        Sam3DCrop.around_box(vol, (10, 10, 10, 5, 20, 20))


def test_world_and_voxel_prompts_give_the_same_crop(tmp_path):
    vol, _ = las_volume()
    path = save_volume(tmp_path / "scan.nii.gz", vol.array, vol.affine)
    loaded = load_volume(path)
    assert np.allclose(loaded.affine, vol.affine) and np.array_equal(loaded.array, vol.array)
    ijk = np.array([80.0, 120.0, 12.0])
    mm = voxel_to_world(ijk, loaded.affine)[0]
    from medmoe.data import world_to_voxel

    a = Sam3DCrop.around_point(loaded, ijk)
    b = Sam3DCrop.around_point(loaded, world_to_voxel(mm, loaded.affine)[0])
    assert np.allclose(a.affine, b.affine) and np.allclose(a.image, b.image)


def test_load_volume_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot read"):
        load_volume(bad)
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4)), flat)
    with pytest.raises(InputError, match="3-D"):
        load_volume(flat)
    nan = tmp_path / "nan.nii.gz"
    arr = np.ones((4, 4, 4), np.float32)
    arr[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(arr, np.eye(4)), nan)
    with pytest.raises(InputError, match="NaN or Inf"):
        load_volume(nan)
    four = tmp_path / "four.nii.gz"
    arr4 = np.random.default_rng(0).random((4, 5, 6, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(arr4, np.eye(4)), four)
    assert load_volume(four).array.shape == (4, 5, 6)


def test_itk_file_gets_ras_affine(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    arr = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)  # (x, y, z)
    img = sitk.GetImageFromArray(arr.transpose(2, 1, 0))
    img.SetSpacing((0.5, 0.7, 2.0))
    img.SetOrigin((10.0, 20.0, 30.0))  # LPS
    sitk.WriteImage(img, str(tmp_path / "scan.mha"))
    vol = load_volume(tmp_path / "scan.mha")
    assert np.array_equal(vol.array, arr)
    # LPS -> RAS flips the first two world axes
    assert np.allclose(
        vol.affine, [[-0.5, 0, 0, -10], [0, -0.7, 0, -20], [0, 0, 2.0, 30], [0, 0, 0, 1]]
    )


@pytest.mark.parametrize(
    "affine",
    [
        np.array([[-0.9, 0, 0, 40], [0, 0, 2.5, -30], [0, 1.1, 0, 10], [0, 0, 0, 1]]),  # LSA
        np.array([[0.8, 0.3, 0, -5], [-0.3, 0.8, 0, 3], [0, 0, 1.7, 2], [0, 0, 0, 1]]),  # oblique
    ],
)
def test_invert_over_a_footprint_equals_the_full_inversion(affine):
    """The server inverts only over ``footprint(mask bbox)``: nothing of the mask may lie outside."""
    from medmoe.serve.session import mask_bbox

    rng = np.random.default_rng(1)
    vol = Volume(rng.normal(size=(90, 50, 70)).astype(np.float32), affine)
    crop = Sam3DCrop.around_point(vol, (45, 25, 35))
    for _ in range(3):
        mask = np.zeros((128,) * 3, bool)
        lo = rng.integers(0, 120, 3)
        mask[tuple(slice(a, a + int(rng.integers(1, 9))) for a in lo)] = True
        full = crop.invert(mask)
        box = mask_bbox(mask)
        flo, fhi = crop.footprint(box)
        part = crop.invert(mask, region=(flo, fhi))
        inside = full[flo[0] : fhi[0], flo[1] : fhi[1], flo[2] : fhi[2]]
        assert np.array_equal(part, inside) and part.sum() == full.sum()
    assert mask_bbox(np.zeros((4, 4, 4), bool)) is None
    m = np.zeros((4, 5, 6), bool)
    m[1, 2:4, 5] = True
    lo, hi = mask_bbox(m)
    assert lo.tolist() == [1, 2, 5] and hi.tolist() == [2, 4, 6]
