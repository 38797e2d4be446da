"""Every bad input gets one clear line: exit code 2 and no traceback on the command line, a
medmoe error type in the Python API."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medmoe.cli.main import main
from medmoe.data import load_label, load_volume, save_volume, write_nnunet_dataset
from medmoe.errors import CheckpointError, InputError, MedmoeError
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


def nifti(path, array, affine=None):
    img = nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine)
    nib.save(img, str(path))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "tiny.pth"
    save_sam3d_checkpoint(build_sam3d("tiny"), path)
    return path


def good_image():
    return np.random.default_rng(0).normal(10, 2, (20, 20, 20)).astype(np.float32)


def make_bad(kind: str, tmp_path):
    p = tmp_path / "scan.nii.gz"
    if kind == "truncated":
        nifti(p, good_image())
        p.write_bytes(p.read_bytes()[:300])
    elif kind == "corrupt":
        p.write_bytes(gzip.compress(b"\x00garbage" * 50))
    elif kind == "not_nifti":
        p = tmp_path / "scan.png"
        p.write_bytes(b"\x89PNG")
    elif kind == "2d":
        nifti(p, good_image()[0])
    elif kind == "5d":
        nifti(p, good_image()[..., None, None].repeat(2, axis=3))
    elif kind == "zero_axis":
        nifti(p, np.zeros((20, 0, 20), np.float32))
    elif kind == "nan":
        a = good_image()
        a[3, 3, 3] = np.nan
        nifti(p, a)
    elif kind == "inf":
        a = good_image()
        a[3, 3, 3] = np.inf
        nifti(p, a)
    elif kind == "constant":
        nifti(p, np.full((20, 20, 20), 7.0, np.float32))
    elif kind == "absurd_spacing":
        nifti(p, good_image(), np.diag([1e5, 1.0, 1.0, 1.0]))
    elif kind == "nonfinite_affine":  # patch the header bytes: nibabel refuses to write NaN
        nifti(p, good_image())
        raw = bytearray(gzip.decompress(p.read_bytes()))
        raw[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1
        raw[280:296] = np.array([np.nan, 0, 0, 0], "<f4").tobytes()  # srow_x
        p.write_bytes(gzip.compress(bytes(raw)))
    elif kind == "huge":
        hdr = nib.Nifti1Header()
        hdr.set_data_shape((4000, 4000, 4000))
        hdr.set_data_dtype(np.float32)
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(p))
        raw = bytearray(gzip.decompress(p.read_bytes()))
        raw[:348] = hdr.binaryblock
        p.write_bytes(gzip.compress(bytes(raw)))
    else:
        raise AssertionError(kind)
    return p


IMAGE_CASES = {
    "truncated": "cannot read",
    "corrupt": "cannot read",
    "not_nifti": "unsupported file type",
    "2d": "expected a 3-D volume",
    "5d": "expected a 3-D volume",
    "zero_axis": "axis of size 0",
    "nan": "NaN or Inf",
    "inf": "NaN or Inf",
    "constant": "constant image",
    "absurd_spacing": "absurd voxel spacing",
    "nonfinite_affine": "affine",
    "huge": "GiB",
}


def expect_cli_error(argv, message, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("kind", sorted(IMAGE_CASES))
def test_bad_images_on_the_cli_and_api(kind, tmp_path, ckpt, capsys):
    path = make_bad(kind, tmp_path)
    out = tmp_path / "mask.nii.gz"
    expect_cli_error(
        [
            "segment",
            "--image",
            str(path),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
        ],
        IMAGE_CASES[kind],
        capsys,
    )
    assert not out.exists()
    with pytest.raises(InputError, match=IMAGE_CASES[kind].split()[0]):
        load_volume(path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--point", "5,5,50"], "outside the image"),
        (["--point=-3,5,5"], "outside the image"),  # negative values need the = form
        (["--point", "5,5"], "expected X,Y,Z"),
        (["--point", "5,5,5,7"], "label must be 1"),
        (["--point", "a,b,c"], "not numbers"),
        (["--point", "nan,5,5"], "NaN or Inf"),
        (["--box", "8,8,8,2,12,12"], "inverted box"),
        (["--box", "1,2,3"], "x1,y1,z1,x2,y2,z2"),
        ([], "at least one --point or a --box"),
    ],
)
def test_bad_prompts(extra, message, tmp_path, ckpt, capsys):
    img = save_volume(tmp_path / "ok.nii.gz", good_image(), np.eye(4))
    expect_cli_error(
        [
            "segment",
            "--image",
            str(img),
            *extra,
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "m.nii.gz"),
        ],
        message,
        capsys,
    )


def test_bad_output_name_and_missing_files(tmp_path, ckpt, capsys):
    img = save_volume(tmp_path / "ok.nii.gz", good_image(), np.eye(4))
    expect_cli_error(
        [
            "segment",
            "--image",
            str(img),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "m.png"),
        ],
        "must end in .nii",
        capsys,
    )
    expect_cli_error(
        [
            "segment",
            "--image",
            str(tmp_path / "nope.nii.gz"),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "m.nii.gz"),
        ],
        "no such file",
        capsys,
    )
    expect_cli_error(
        [
            "segment",
            "--image",
            str(img),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(tmp_path / "none.pth"),
            "--out",
            str(tmp_path / "m.nii.gz"),
        ],
        "checkpoint not found",
        capsys,
    )


def test_labels_with_unexpected_values(tmp_path):
    with pytest.raises(InputError, match="non-integer"):
        load_label(nifti(tmp_path / "l1.nii.gz", np.full((4, 4, 4), 1.5, np.float32)))
    with pytest.raises(InputError, match="negative"):
        load_label(nifti(tmp_path / "l2.nii.gz", -np.ones((4, 4, 4), np.int16)))


def test_empty_and_malformed_datasets(tmp_path, ckpt, capsys):
    expect_cli_error(
        [
            "evaluate",
            "--dataset",
            str(tmp_path),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "r.csv"),
        ],
        "no cases found",
        capsys,
    )
    expect_cli_error(
        [
            "evaluate",
            "--dataset",
            str(tmp_path / "missing"),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "r.csv"),
        ],
        "dataset folder not found",
        capsys,
    )
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset.json").write_text("{not json")
    expect_cli_error(
        [
            "evaluate",
            "--dataset",
            str(tmp_path / "ds"),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "r.csv"),
        ],
        "dataset.json",
        capsys,
    )
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    write_nnunet_dataset(
        tmp_path / "ok", {"c": (good_image()[:10, :10, :10], lab, np.eye(4))}, {"a": 1}
    )
    expect_cli_error(
        [
            "evaluate",
            "--dataset",
            str(tmp_path / "ok"),
            "--checkpoint",
            str(ckpt),
            "--labels",
            "spleen",
            "--out",
            str(tmp_path / "r.csv"),
        ],
        "unknown labels",
        capsys,
    )


def test_checkpoint_that_fits_no_model(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(3)}}, bad)
    img = save_volume(tmp_path / "ok.nii.gz", good_image(), np.eye(4))
    expect_cli_error(
        [
            "segment",
            "--image",
            str(img),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(bad),
            "--out",
            str(tmp_path / "m.nii.gz"),
        ],
        "fits no registered SAM-Med3D model",
        capsys,
    )


class Payload:
    """Unpickling this would create the sentinel file: it must never happen."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_never_executes(tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "x": Payload(str(sentinel))}, evil)
    assert not sentinel.exists()
    img = save_volume(tmp_path / "ok.nii.gz", good_image(), np.eye(4))
    expect_cli_error(
        [
            "segment",
            "--image",
            str(img),
            "--point",
            "5,5,5",
            "--checkpoint",
            str(evil),
            "--out",
            str(tmp_path / "m.nii.gz"),
        ],
        "code to unpickle",
        capsys,
    )
    from medmoe.train.checkpoint import load_training_state

    with pytest.raises(CheckpointError):
        load_training_state(evil, model=torch.nn.Linear(1, 1))
    assert not sentinel.exists()


def test_expert_from_another_base_is_refused(tmp_path, capsys):
    from medmoe.moe import ExpertInfo, save_expert

    torch.manual_seed(0)
    base = build_sam3d("tiny")
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    save_sam3d_checkpoint(base, a)
    torch.manual_seed(1)
    save_sam3d_checkpoint(build_sam3d("tiny"), b)
    from medmoe.utils import file_sha256

    save_expert(
        tmp_path / "ex",
        decoder=base.mask_decoder,
        info=ExpertInfo(
            name="x", labels=["a"], base_sha256=file_sha256(a), model_config=base.config.to_dict()
        ),
    )
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    write_nnunet_dataset(
        tmp_path / "ds", {"c": (good_image()[:10, :10, :10], lab, np.eye(4))}, {"a": 1}
    )
    expect_cli_error(
        [
            "moe",
            "train",
            "--base",
            str(b),
            "--expert",
            str(tmp_path / "ex"),
            "--dataset",
            str(tmp_path / "ds"),
            "--out",
            str(tmp_path / "bundle"),
        ],
        "different base checkpoint",
        capsys,
    )
    (tmp_path / "ex" / "expert.json").write_text(json.dumps({"format": "other"}))
    expect_cli_error(
        ["moe", "list", "--moe", str(tmp_path / "nothing")], "not a MoE bundle", capsys
    )


def test_api_errors_are_medmoe_errors():
    from medmoe.sam3d import Sam3DPredictor

    p = Sam3DPredictor(build_sam3d("tiny"))
    with pytest.raises(MedmoeError, match="no image is set"):
        p.predict(points=[[1, 2, 3]], labels=[1])
    with pytest.raises(MedmoeError, match="shape"):
        p.set_image(np.zeros((64, 64, 64), np.float32))


@pytest.mark.parametrize("kind", sorted(IMAGE_CASES))
def test_bad_images_uploaded_to_the_server(kind, tmp_path, ckpt):
    """The same files through ``medmoe serve``: a 4xx with the same one-line message, the
    server's own paths never shown, and nothing left in the data directory."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from medmoe.sam3d import Sam3DPredictor, load_sam3d
    from medmoe.serve import ServeConfig, create_app

    path = make_bad(kind, tmp_path)
    data = tmp_path / "data"
    app = create_app(predictor=Sam3DPredictor(load_sam3d(ckpt)), config=ServeConfig(data_dir=data))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        r = http.post(
            "/api/sessions", params={"filename": "scan.nii.gz"}, content=path.read_bytes()
        )
    assert 400 <= r.status_code < 500, r.text
    detail = r.json()["detail"]
    message = "not a NIfTI file" if kind == "not_nifti" else IMAGE_CASES[kind]  # sniffed first
    assert message in detail and "\n" not in detail and str(data) not in detail
    assert list((data / "sessions").iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "0"], "--port must be in 1..65535"),
        (["--max-upload-mb", "-1"], "must be positive"),
        (["--data-dir", "FILE"], "is not a folder"),
    ],
)
def test_bad_serve_arguments(argv, message, tmp_path, ckpt, capsys):
    pytest.importorskip("fastapi")
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    expect_cli_error(["serve", "--checkpoint", str(ckpt), *argv], message, capsys)


@pytest.mark.parametrize("kind", sorted(IMAGE_CASES))
def test_bad_images_uploaded_to_the_monailabel_datastore(kind, tmp_path, ckpt):
    """The same files through MONAI Label's ``PUT /datastore/`` (multipart, as its client sends
    them): a 4xx with the same one line, no server path shown, nothing left in the datastore."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from medmoe.sam3d import Sam3DPredictor, load_sam3d
    from medmoe.serve import ServeConfig, create_app

    path = make_bad(kind, tmp_path)
    data = tmp_path / "data"
    app = create_app(predictor=Sam3DPredictor(load_sam3d(ckpt)), config=ServeConfig(data_dir=data))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        files = {"file": ("/home/me/scan.nii.gz", path.read_bytes())}
        r = http.put("/datastore/?image=case", files=files, data={"params": "{}"})
        assert 400 <= r.status_code < 500, r.text
        assert http.get("/datastore/?output=all").json()["objects"] == {}
    detail = r.json()["detail"]
    message = "neither NIfTI" if kind == "not_nifti" else IMAGE_CASES[kind]  # sniffed first
    assert message in detail and "\n" not in detail and str(data) not in detail
    assert list((data / "monailabel" / "images").iterdir()) == []


def expect_exit2(argv, message, capsys):
    """Like ``expect_cli_error``, for errors argparse reports itself (it exits)."""
    try:
        rc = main(argv)
    except SystemExit as stop:
        rc = stop.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def tiny_dataset(root):
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    write_nnunet_dataset(root, {"c": (good_image()[:10, :10, :10], lab, np.eye(4))}, {"a": 1})
    return root


@pytest.mark.parametrize(
    "record, message",
    [
        # a model config Sam3DConfig refuses (a ValueError before)
        ({"model_config": {"encoder_dim": 96, "bogus": 1}}, "unknown Sam3DConfig keys"),
        # a record with keys missing (a TypeError before)
        ({"drop": ["base_sha256", "model_config"]}, "bad ExpertInfo"),
    ],
)
def test_bad_expert_records(record, message, tmp_path, ckpt, capsys):
    from medmoe.moe import ExpertInfo, save_expert
    from medmoe.sam3d import load_sam3d
    from medmoe.utils import file_sha256

    base = load_sam3d(ckpt)
    info = ExpertInfo(
        name="x", labels=["a"], base_sha256=file_sha256(ckpt), model_config=base.config.to_dict()
    )
    save_expert(tmp_path / "ex", decoder=base.mask_decoder, info=info)
    raw = json.loads((tmp_path / "ex" / "expert.json").read_text())
    raw.update(record.get("model_config") and {"model_config": record["model_config"]} or {})
    for key in record.get("drop", []):
        del raw[key]
    (tmp_path / "ex" / "expert.json").write_text(json.dumps(raw))
    argv = ["moe", "train", "--base", str(ckpt), "--expert", str(tmp_path / "ex")]
    argv += ["--dataset", str(tiny_dataset(tmp_path / "ds")), "--out", str(tmp_path / "b")]
    expect_cli_error(argv, message, capsys)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got '0'"),
        (["--lr=-1e-3"], "--lr: expected a number > 0, got '-1e-3'"),
        (["--epochs", "two"], "--epochs: expected an integer >= 1, got 'two'"),
        (["--device", "gpu7"], "--device: must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_training_numbers(extra, message, tmp_path, ckpt, capsys):
    argv = ["expert", "train", "--name", "x", "--dataset", str(tmp_path), "--base", str(ckpt)]
    expect_exit2([*argv, "--out", str(tmp_path / "out"), *extra], message, capsys)
    assert not (tmp_path / "out").exists()


def test_non_numeric_volume_limit(tmp_path, ckpt, capsys, monkeypatch):
    nifti(tmp_path / "scan.nii.gz", good_image())
    monkeypatch.setenv("MEDMOE_MAX_VOLUME_BYTES", "lots")
    argv = ["segment", "--image", str(tmp_path / "scan.nii.gz"), "--point", "5,5,5"]
    argv += ["--checkpoint", str(ckpt), "--out", str(tmp_path / "m.nii.gz")]
    expect_cli_error(argv, "MEDMOE_MAX_VOLUME_BYTES must be a positive integer, got 'lots'", capsys)
    assert not (tmp_path / "m.nii.gz").exists()


@pytest.mark.parametrize(
    "action, extra, message",
    [
        ("train", ["--batch-size", "0"], "--batch-size: expected an integer >= 1, got '0'"),
        ("train", ["--lr-backbone=-1"], "--lr-backbone: expected a number > 0"),
        ("train", ["--top-p", "1.5"], "--top-p: expected a number in (0, 1]"),
        ("train", ["--synthetic-count", "0"], "--synthetic-count: expected an integer >= 1"),
        ("train", ["--size", "16,16"], "--size must be at least 32,32"),
        ("evaluate", ["--batch-size", "-2"], "--batch-size: expected an integer >= 1"),
        ("evaluate", ["--split", "dev"], "invalid choice"),
        ("evaluate", ["--seed", "x"], "--seed: expected an integer >= 0"),
    ],
)
def test_bad_fundus_numbers(action, extra, message, tmp_path, capsys):
    argv = ["fundus", action, "--data", "synthetic", *extra]
    argv += ["--out", str(tmp_path / "o")] if action == "train" else ["--checkpoint", str(tmp_path)]
    expect_exit2(argv, message, capsys)
    assert not (tmp_path / "o").exists()


def test_bad_fundus_data_and_device(tmp_path, capsys):
    argv = ["fundus", "train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    expect_cli_error(argv, "not an IDRiD folder", capsys)
    if not torch.cuda.is_available():
        argv = ["fundus", "train", "--data", "synthetic", "--out", str(tmp_path / "o")]
        expect_cli_error([*argv, "--device", "cuda"], "no CUDA device is available", capsys)
    assert not (tmp_path / "o").exists()
