from __future__ import annotations

import numpy as np
import pytest

from medmoe.data import find_targets, save_volume, write_nnunet_dataset
from medmoe.errors import InputError


def test_nnunet_layout_one_target_per_label(tmp_path):
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 1
    lab[4, 4, 4] = 2
    img = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
    cases = {c: (img, lab, np.eye(4)) for c in ("case_a", "case_b")}
    write_nnunet_dataset(tmp_path, cases, {"liver": 1, "tumour": 2})
    targets = find_targets(tmp_path)
    assert [(t.case_id, t.value, t.name) for t in targets] == [
        ("case_a", 1, "liver"),
        ("case_a", 2, "tumour"),
        ("case_b", 1, "liver"),
        ("case_b", 2, "tumour"),
    ]
    assert targets[0].image.name == "case_a_0000.nii.gz"
    assert [t.value for t in find_targets(tmp_path, labels=["tumour"])] == [2, 2]
    with pytest.raises(InputError, match="unknown labels"):
        find_targets(tmp_path, labels=["spleen"])


def test_sam_med3d_layout(tmp_path):
    img = np.random.default_rng(0).random((5, 5, 5)).astype(np.float32)
    for name in ("a", "b"):
        save_volume(tmp_path / "kidney" / "ds1" / "imagesTr" / f"{name}.nii.gz", img, np.eye(4))
        save_volume(
            tmp_path / "kidney" / "ds1" / "labelsTr" / f"{name}.nii.gz", img > 0.5, np.eye(4)
        )
    targets = find_targets(tmp_path)
    assert [(t.case_id, t.value, t.name) for t in targets] == [
        ("ds1/a", 1, "kidney"),
        ("ds1/b", 1, "kidney"),
    ]


def test_empty_dataset_is_refused(tmp_path):
    with pytest.raises(InputError, match="no cases found"):
        find_targets(tmp_path)
