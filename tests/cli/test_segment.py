from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medmoe.cli.main import main
from medmoe.data import save_volume, voxel_to_world
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_sam3d_checkpoint(build_sam3d("tiny"), path)
    return path


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    affine = np.array([[-0.9, 0, 0, 40], [0, 0, 2.5, -30], [0, 1.1, 0, 10], [0, 0, 0, 1]])  # LSA
    image = np.random.default_rng(0).normal(50, 10, (70, 40, 60)).astype(np.float32)
    path = tmp_path_factory.mktemp("scan") / "scan.nii.gz"
    save_volume(path, image, affine)
    return path, affine


def test_segment_writes_aligned_mask(tmp_path, tiny_ckpt, scan, capsys):
    path, affine = scan
    out = tmp_path / "mask.nii.gz"
    rc = main(
        [
            "segment",
            "--image",
            str(path),
            "--point",
            "30,20,25",
            "--point",
            "35,20,25,0",
            "--checkpoint",
            str(tiny_ckpt),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    img = nib.load(out)
    assert img.shape == (70, 40, 60) and np.allclose(img.affine, affine)
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1}
    assert "wrote" in capsys.readouterr().out


def test_world_point_equals_voxel_point(tmp_path, tiny_ckpt, scan):
    path, _ = scan
    affine = nib.load(path).affine  # the file's (float32-stored) affine defines its mm
    mm = voxel_to_world(np.array([30.0, 20.0, 25.0]), affine)[0]
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    main(
        [
            "segment",
            "--image",
            str(path),
            "--point",
            "30,20,25",
            "--checkpoint",
            str(tiny_ckpt),
            "--out",
            str(a),
        ]
    )
    main(
        [
            "segment",
            "--image",
            str(path),
            "--point",
            ",".join(f"{v:.6f}" for v in mm),
            "--world",
            "--checkpoint",
            str(tiny_ckpt),
            "--out",
            str(b),
        ]
    )
    assert np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--point", "500,1,1"], "outside the image"),
        (["--point", "1,2"], "expected X,Y,Z"),
        (["--box", "10,10,10,5,20,20"], "inverted box"),
    ],
)
def test_bad_prompts_exit_2_with_one_line(tmp_path, tiny_ckpt, scan, capsys, extra, message):
    path, _ = scan
    out = tmp_path / "m.nii.gz"
    rc = main(
        ["segment", "--image", str(path), *extra, "--checkpoint", str(tiny_ckpt), "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()
