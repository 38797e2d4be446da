from __future__ import annotations

import csv

import numpy as np
import pytest

from medmoe.cli.main import main
from medmoe.data import write_nnunet_dataset
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


def test_evaluate_writes_csv_and_table(tmp_path, capsys):
    import torch

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    save_sam3d_checkpoint(build_sam3d("tiny"), ckpt)
    rng = np.random.default_rng(0)
    cases = {}
    for c in ("c1", "c2"):
        lab = np.zeros((40, 40, 30), np.uint8)
        lab[5:15, 5:15, 5:12] = 1
        lab[22:35, 20:30, 10:20] = 2
        img = (rng.normal(20, 3, lab.shape) + 40 * (lab > 0)).astype(np.float32)
        cases[c] = (img, lab, np.diag([1.2, 1.2, 2.0, 1.0]))
    write_nnunet_dataset(tmp_path / "ds", cases, {"liver": 1, "spleen": 2})
    out = tmp_path / "results.csv"
    rc = main(
        [
            "evaluate",
            "--dataset",
            str(tmp_path / "ds"),
            "--checkpoint",
            str(ckpt),
            "--prompt",
            "points",
            "--clicks",
            "1,3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["case"], r["name"]) for r in rows] == [
        ("c1", "liver"),
        ("c1", "spleen"),
        ("c2", "liver"),
        ("c2", "spleen"),
    ]
    for r in rows:
        for key in ("dice@1", "dice@3", "nsd@1", "hd95@3"):
            assert key in r
        assert 0.0 <= float(r["dice@3"]) <= 1.0
    printed = capsys.readouterr().out
    assert "dice@1" in printed and "liver" in printed and "spleen" in printed


@pytest.mark.parametrize("clicks", ["0", "a,b"])
def test_bad_click_list_exits_2(tmp_path, clicks):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "evaluate",
                "--dataset",
                str(tmp_path),
                "--checkpoint",
                "x",
                "--clicks",
                clicks,
                "--out",
                str(tmp_path / "r.csv"),
            ]
        )
    assert exc.value.code == 2


def test_empty_dataset_exits_2(tmp_path, capsys):
    rc = main(
        [
            "evaluate",
            "--dataset",
            str(tmp_path),
            "--checkpoint",
            "x",
            "--out",
            str(tmp_path / "r.csv"),
        ]
    )
    assert rc == 2 and "no cases found" in capsys.readouterr().err


def test_evaluate_reads_dicom_series_images_as_their_nifti(tmp_path):
    """A case whose image is a DICOM folder (imagesTr/<case>_0000/) scores as its NIfTI does."""
    import torch
    from tests.data.dicomkit import write_series

    from medmoe.data import load_volume

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    save_sam3d_checkpoint(build_sam3d("tiny"), ckpt)
    lab = np.zeros((40, 40, 30), np.uint8)
    lab[10:25, 12:30, 8:20] = 1
    img = (np.random.default_rng(1).normal(20, 3, lab.shape) + 40 * lab).astype(np.float32)
    affine = np.diag([1.25, 1.25, 2.0, 1.0])
    write_series(tmp_path / "series", img, affine, intercept=0.0)
    img = load_volume(tmp_path / "series").array  # the values as DICOM stores them
    write_nnunet_dataset(tmp_path / "nifti", {"c1": (img, lab, affine)}, {"liver": 1})
    write_nnunet_dataset(tmp_path / "dicom", {"c1": (img, lab, affine)}, {"liver": 1})
    (tmp_path / "dicom" / "imagesTr" / "c1_0000.nii.gz").unlink()
    (tmp_path / "series").rename(tmp_path / "dicom" / "imagesTr" / "c1_0000")
    rows = {}
    for name in ("nifti", "dicom"):
        out = tmp_path / f"{name}.csv"
        argv = ["evaluate", "--dataset", str(tmp_path / name), "--checkpoint", str(ckpt)]
        assert main([*argv, "--prompt", "points", "--clicks", "1,3", "--out", str(out)]) == 0
        rows[name] = list(csv.DictReader(out.open()))
    assert rows["dicom"] == rows["nifti"]
    assert float(rows["dicom"][0]["dice@3"]) > 0
