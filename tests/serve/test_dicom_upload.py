"""A zip of a DICOM series uploaded to the viewer and to MONAI Label's datastore, and its masks
saved as DICOM SEG; the zip's limits; CORS preflight from OHIF's origin."""

from __future__ import annotations

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.data.dicomkit import write_series
from tests.serve.conftest import AFFINE, SHAPE

from medmoe.data import load_volume
from medmoe.data.dicom import read_series
from medmoe.data.dicom_seg import read_dicom_seg
from medmoe.data.io import nifti_bytes
from medmoe.serve import ServeConfig, create_app
from medmoe.serve.monailabel.multipart import encode_form

OHIF = "http://localhost:3000"


def nifti_array(data: bytes) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(data)).dataobj)


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory):
    """A scan of integers (exact after dicomkit's slope 0.5 / intercept -100) as a zipped series;
    ``(zip bytes, source array, the series read from its folder)``."""
    root = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(1)
    array = rng.integers(0, 200, SHAPE).astype(np.float32)
    array[20:40, 10:30, 20:40] += 300
    paths = write_series(root / "series", array, AFFINE)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for p in paths:
            archive.write(p, f"DICOM/{p.name}")
    return buf.getvalue(), array, read_series(root / "series")


@pytest.fixture
def http(tmp_path, tiny_predictor):
    config = ServeConfig(data_dir=tmp_path / "data", allow_origins=(OHIF,))
    app = create_app(predictor=tiny_predictor, config=config)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def test_viewer_reads_a_zipped_series_and_saves_its_mask_as_seg(http, series_zip):
    data, array, series = series_zip
    r = http.post("/api/sessions?filename=brain.zip", content=data)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["shape"] == list(SHAPE) and info["dicom"] is True
    assert np.allclose(info["affine"], AFFINE, atol=1e-6)  # the source affine, through LPS
    sid = info["id"]
    assert http.post(f"/api/sessions/{sid}/prompts", json={"points": [[30, 20, 25]]}).is_success
    mask = nifti_array(http.get(f"/api/sessions/{sid}/mask.nii.gz").content)
    r = http.get(f"/api/sessions/{sid}/mask.dcm")
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    assert 'filename="brain_seg.dcm"' in r.headers["content-disposition"]
    label, names = read_dicom_seg(r.content, series.headers)
    assert np.array_equal(label, mask) and names == {1: "segment"}


def test_a_nifti_session_has_no_seg(http, scan_path):
    r = http.post("/api/sessions?filename=scan.nii.gz", content=scan_path.read_bytes())
    sid = r.json()["id"]
    assert r.json()["dicom"] is False
    r = http.get(f"/api/sessions/{sid}/mask.dcm")
    assert r.status_code == 400 and "NIfTI" in r.json()["detail"]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_zip_limits_and_bad_zips_are_one_line_4xx(tmp_path, tiny_predictor):
    # 2 MiB of zeros per member deflate to a few KiB: 3 of them pass a 4 MiB cap unpacked
    config = ServeConfig(data_dir=tmp_path / "d", max_volume_bytes=4 << 20)
    app = create_app(predictor=tiny_predictor, config=config)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        bomb = _zip({f"m{n}": bytes(2 << 20) for n in range(3)})
        r = http.post("/api/sessions?filename=bomb.zip", content=bomb)
        assert r.status_code == 413 and "unpack to 6 MiB" in r.json()["detail"], r.text
        many = _zip({f"m{n}": b"" for n in range(10_001)})
        r = http.post("/api/sessions?filename=many.zip", content=many)
        assert r.status_code == 400 and "more than 10000" in r.json()["detail"], r.text
        r = http.post("/api/sessions?filename=x.zip", content=_zip({"readme.txt": b"hello"}))
        assert r.status_code == 400 and "no DICOM image files" in r.json()["detail"], r.text
        assert str(tmp_path) not in r.json()["detail"]  # the client's name, not the server's path
        r = http.post("/api/sessions?filename=x.zip", content=b"PK\x03\x04 not really a zip")
        assert r.status_code == 400 and "not a readable zip" in r.json()["detail"]
        assert len(app.state.store) == 0 and app.state.budget.used == 0


def test_datastore_takes_a_zip_and_gives_its_label_as_seg(http, series_zip, tmp_path):
    data, array, series = series_zip
    ctype, body = encode_form([("file", "brain.zip", "application/zip", data)])
    r = http.put("/datastore/?image=brain", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    volume, _ = http.app.state.datastore.volume("brain")
    assert np.array_equal(volume.array, array) and np.allclose(volume.affine, AFFINE, atol=1e-6)
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[22:30, 12:20, 25:31] = 1
    label[40:45, 5:9, 3:7] = 2
    ctype, body = encode_form(
        [
            ("label", "brain.nii.gz", "application/gzip", nifti_bytes(label, AFFINE)),
            ("params", None, "application/json", b'{"label_names": {"tumour": 1}}'),
        ]
    )
    r = http.put(
        "/datastore/label?image=brain&tag=final", content=body, headers={"Content-Type": ctype}
    )
    assert r.status_code == 200, r.text
    r = http.get("/datastore/label?label=brain&tag=final&format=dicom-seg")
    assert r.status_code == 200, r.text
    got, names = read_dicom_seg(r.content, series.headers)
    assert np.array_equal(got, label) and names == {1: "tumour", 2: "segment 2"}
    # as saved, byte for byte, without format
    saved = http.get("/datastore/label?label=brain&tag=final").content
    assert np.array_equal(nifti_array(saved), label)
    assert http.get("/datastore/label?label=brain&format=png").status_code == 400


def test_a_nifti_image_has_no_seg_label(http, scan_path):
    ctype, body = encode_form([("file", "scan.nii.gz", "application/gzip", scan_path.read_bytes())])
    assert http.put("/datastore/?image=s", content=body, headers={"Content-Type": ctype}).is_success
    label = nifti_bytes(np.zeros(SHAPE, np.uint8), load_volume(scan_path).affine)
    ctype, body = encode_form([("label", "s.nii.gz", "application/gzip", label)])
    assert http.put(
        "/datastore/label?image=s", content=body, headers={"Content-Type": ctype}
    ).is_success
    r = http.get("/datastore/label?label=s&format=dicom-seg")
    assert r.status_code == 400 and "not DICOM" in r.json()["detail"]


def test_cors_preflight_from_the_ohif_origin(http):
    """OHIF (another origin, no credentials) may call the API; another origin may not."""
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = http.options("/infer/medmoe_sam3d", headers={"Origin": OHIF, **ask})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == OHIF
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in r.headers  # never with credentials
    r = http.get("/info/", headers={"Origin": OHIF})
    assert r.headers["access-control-allow-origin"] == OHIF
    r = http.options("/infer/medmoe_sam3d", headers={"Origin": "http://evil.example", **ask})
    assert r.status_code >= 400 and "access-control-allow-origin" not in r.headers


def test_cors_preflight_with_auth_needs_no_token_but_the_call_does(tmp_path, tiny_predictor):
    """With ``--auth``, a browser's preflight (which never carries a token) is answered, and
    the call itself is 401 without the bearer token a proxy adds (docs/slicer-ohif.md), with
    the CORS header so that OHIF can show the error."""
    from medmoe.serve.auth import AuthConfig

    token = "cors-auth-test-token-0123456789-abcdefghijk"
    config = ServeConfig(data_dir=tmp_path / "d", allow_origins=(OHIF,))
    app = create_app(predictor=tiny_predictor, config=config, auth=AuthConfig(token=token))
    ask = {
        "Origin": OHIF,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    with TestClient(app, base_url="http://127.0.0.1") as http:
        r = http.options("/info/", headers=ask)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == OHIF
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in r.headers
        r = http.get("/info/", headers={"Origin": OHIF})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == OHIF
        r = http.get("/info/", headers={"Origin": OHIF, "Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == OHIF
