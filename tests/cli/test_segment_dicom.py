"""``medmoe segment`` on a DICOM series: the mask equals the NIfTI's, and a DICOM SEG comes out."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from tests.data.dicomkit import write_series

from medmoe.cli.main import main
from medmoe.data import load_volume, save_volume
from medmoe.data.dicom import read_series
from medmoe.data.dicom_seg import read_dicom_seg
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("dicom")
    ckpt = root / "tiny.pth"
    save_sam3d_checkpoint(build_sam3d("tiny"), ckpt)
    # exact in float32 (NIfTI) and in DICOM's decimal strings, so both paths crop alike
    affine = np.array([[-1.0, 0, 0, 40], [0, 1.25, 0, -30], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    image = np.random.default_rng(0).normal(50, 10, (40, 36, 30)).astype(np.float32)
    write_series(root / "series", image, affine, series_uid="1.2.826.0.1.3680043.2.1143.7")
    vol = load_volume(root / "series")  # the values as DICOM stores them (a 0.5 step)
    save_volume(root / "scan.nii.gz", vol.array, vol.affine)
    return root, ckpt


def _segment(root, ckpt, image, out, *extra):
    argv = ["segment", "--image", str(image), "--point", "20,18,15", "--checkpoint", str(ckpt)]
    return main([*argv, "--out", str(out), *extra])


def test_a_series_segments_as_its_nifti_does_and_writes_a_seg(case, tmp_path):
    root, ckpt = case
    assert _segment(root, ckpt, root / "scan.nii.gz", tmp_path / "ref.nii.gz") == 0
    ref = np.asarray(nib.load(tmp_path / "ref.nii.gz").dataobj)
    assert ref.sum() > 0
    assert _segment(root, ckpt, root / "series", tmp_path / "from_dicom.nii.gz") == 0
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "from_dicom.nii.gz").dataobj), ref)
    out = tmp_path / "mask.dcm"
    assert _segment(root, ckpt, root / "series", out, "--segment-label", "lesion") == 0
    series = read_series(root / "series")
    mask, names = read_dicom_seg(out, series.headers)
    np.testing.assert_array_equal(mask, ref)
    assert names == {1: "lesion"}
    ds = pydicom.dcmread(out)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.2.1143.7"
    assert ds.ManufacturerModelName == "tiny"
    params = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "expert=general" in params.AlgorithmParameters
    assert _segment(root, ckpt, root / "series", tmp_path / "m2", "--format", "dicom-seg") == 0
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "m2", series.headers)[0], ref)


@pytest.mark.parametrize(
    ("image", "out", "extra", "message"),
    [
        ("scan.nii.gz", "m.dcm", [], "a DICOM SEG needs a DICOM series as --image"),
        ("scan.nii.gz", "m.nii.gz", ["--series", "1.2"], "--series applies to a DICOM folder"),
        ("series", "m.nii.gz", ["--series", "1.2"], "no series 1.2; it holds"),
        ("series", "m.png", [], "must end in .nii, .nii.gz or .dcm"),
        ("series", "m.dcm", ["--format", "nifti"], "a NIfTI mask must end in .nii or .nii.gz"),
    ],
)
def test_dicom_mistakes_are_one_line_with_exit_2(
    case, tmp_path, capsys, image, out, extra, message
):
    root, ckpt = case
    rc = _segment(root, ckpt, root / image, tmp_path / out, *extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / out).exists()
