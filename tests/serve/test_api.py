"""The HTTP API with a tiny model, through the Python client over FastAPI's TestClient."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tests.serve.conftest import SHAPE

from medmoe.data import Sam3DCrop, load_volume
from medmoe.serve import ServeConfig, create_app
from medmoe.serve.client import MedmoeClient, ServerError, region_mask


@pytest.fixture
def server(tmp_path, tiny_predictor):
    app = create_app(predictor=tiny_predictor, config=ServeConfig(data_dir=tmp_path / "data"))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield MedmoeClient(http=http), http, app, tmp_path / "data"


def reference_mask(predictor, path, points, labels):
    """The same prompts through the library, as ``medmoe segment`` runs them (two clicks:
    the second feeds the first's low-resolution logits back, as the server does)."""
    vol = load_volume(path)
    crop = Sam3DCrop.around_point(vol, points[0])
    predictor.set_image(crop.image)
    low = None
    for n in range(1, len(points) + 1):
        pred = predictor.predict(
            points=crop.to_crop_coords(points[:n]), labels=labels[:n], mask_input=low
        )
        low = pred.low_res_logits
    return crop.invert(pred.mask[0, 0].numpy())


def test_upload_click_download_matches_library_and_upload_affine(server, scan_path, tmp_path):
    client, _, app, data = server
    sid = client.upload(scan_path)
    info = client.session(sid)
    assert info["shape"] == list(SHAPE) and info["steps"] == 0
    first = client.click(sid, [30, 20, 25])
    assert first["encoded"] and first["step"] == 1 and first["expert"] == "general"
    second = client.click(sid, [35, 20, 25], positive=False)
    assert not second["encoded"]  # the crop's embedding was cached: only the decoders ran
    assert len(app.state.store.engine.encoder_seconds) == 1

    out = client.download(sid, tmp_path / "mask.nii.gz")
    img = nib.load(out)
    assert img.shape == SHAPE
    assert np.allclose(img.affine, nib.load(scan_path).affine, atol=1e-6)
    mask = np.asarray(img.dataobj)
    points = np.array([[30, 20, 25], [35, 20, 25]], dtype=float)
    expected = reference_mask(app.state.store.engine.predictor, scan_path, points, np.array([1, 0]))
    assert np.array_equal(mask.astype(bool), expected)
    # the update's region carries exactly that mask, and the count is of the whole scan
    lo, hi = second["lo"], second["hi"]
    assert np.array_equal(
        region_mask(second), expected[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    )
    assert second["voxels"] == int(expected.sum())


def test_undo_restores_the_previous_mask_and_reset_clears(server, scan_path):
    client, *_ = server
    sid = client.upload(scan_path)
    a = client.click(sid, [30, 20, 25])
    client.click(sid, [25, 18, 30], positive=False)
    undone = client.undo(sid)
    assert undone["step"] == 1 and undone["bits"] == a["bits"] and undone["voxels"] == a["voxels"]
    cleared = client.reset(sid)
    assert cleared["step"] == 0 and cleared["voxels"] == 0 and cleared["expert"] is None
    assert not region_mask(cleared).any() and cleared["lo"] == a["lo"]
    with pytest.raises(ServerError, match="nothing to undo"):
        client.undo(sid)


def test_box_prompt_and_slices(server, scan_path):
    client, *_ = server
    sid = client.upload(scan_path)
    update = client.box(sid, [20, 10, 20, 40, 30, 40])
    assert update["step"] == 1
    # axial view of an LSA scan: slice axis 1 (S), x = axis 0 unflipped (index runs to the
    # patient's left), y = axis 2 flipped (index runs anterior, screen y runs posterior)
    view = client.session(sid)["views"]["axial"]
    assert (view["slice_axis"], view["x_axis"], view["y_axis"]) == (1, 0, 2)
    assert (view["x_flip"], view["y_flip"]) == (False, True)
    from PIL import Image

    png = Image.open(io.BytesIO(client.slice_png(sid, "axial", 15, window=100, level=50)))
    assert png.size == (70, 60)  # width = axis 0, height = axis 2
    vol = load_volume(scan_path).array
    expected = np.clip((vol[:, 15, :].T[::-1] - 0) / 100, 0, 1) * 255
    assert np.abs(np.asarray(png, dtype=float) - expected).max() <= 0.5 + 1e-6


def test_moe_reports_expert_and_s_top(tmp_path, scan_path):
    from medmoe.moe import Gate, GateConfig, MoEPredictor, MoESam3D
    from medmoe.sam3d import build_mask_decoder, build_sam3d

    torch.manual_seed(1)
    base = build_sam3d("tiny")
    expert = build_mask_decoder(base.config)
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    for tau, expected in ((0.0, "liver"), (1.0, "general")):  # s_top > 0 always, never > 1
        moe = MoESam3D(base=base, experts={"liver": expert}, gate=gate, tau=tau)
        app = create_app(predictor=MoEPredictor(moe), config=ServeConfig(data_dir=tmp_path / "d"))
        with TestClient(app, base_url="http://127.0.0.1") as http:
            client = MedmoeClient(http=http)
            assert client.info()["experts"] == ["liver"]
            u = client.click(client.upload(scan_path), [30, 20, 25])
        assert u["expert"] == expected
        assert set(u["gate_probs"]) == {"none", "liver"}
        assert u["s_top"] == pytest.approx(u["gate_probs"]["liver"])


def test_sessions_expire_and_their_files_go(tmp_path, tiny_predictor, scan_path):
    now = [0.0]
    app = create_app(
        predictor=tiny_predictor,
        config=ServeConfig(data_dir=tmp_path / "data", session_ttl_s=60),
    )
    store = app.state.store
    store.clock = lambda: now[0]
    with TestClient(app, base_url="http://127.0.0.1") as http:
        client = MedmoeClient(http=http)
        sid = client.upload(scan_path)
        assert (store.root / sid / "upload.nii.gz").is_file()
        now[0] = 59.0
        client.session(sid)  # use renews the lease
        now[0] = 118.0
        assert client.session(sid)["id"] == sid
        now[0] = 179.0
        with pytest.raises(ServerError) as err:
            client.session(sid)
        assert err.value.status == 404
        assert not (store.root / sid).exists()
    # everything the server wrote is under the data directory, and it is gone at shutdown
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "data" not in p.parts] == []


# --- bad requests: a 4xx with a one-line message, and nothing left behind ---------------------
def _post(http, body: bytes, name: str = "x.nii.gz"):
    return http.post("/api/sessions", params={"filename": name}, content=body)


@pytest.mark.parametrize(
    "case, status, message",
    [
        ("png", 415, "not a NIfTI file"),
        ("text-named-png", 415, "only NIfTI"),
        ("2d", 400, "3-D"),
        ("truncated", 400, "scan.nii.gz"),
        ("empty", 400, "empty"),
        ("oversized", 413, "over the limit"),
        ("traversal", 400, "must not contain a path"),
        ("backslash", 400, "must not contain a path"),
    ],
)
def test_bad_uploads(tmp_path, tiny_predictor, scan_path, case, status, message):
    limit = 4096 if case == "oversized" else 1 << 20
    app = create_app(
        predictor=tiny_predictor,
        config=ServeConfig(data_dir=tmp_path / "data", max_upload_bytes=limit),
    )
    flat = io.BytesIO()
    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), tmp_path / "flat.nii")
    good = scan_path.read_bytes()
    bodies = {
        "png": (b"\x89PNG\r\n\x1a\n" + bytes(400), "scan.nii.gz"),
        "text-named-png": (good, "scan.png"),
        "2d": ((tmp_path / "flat.nii").read_bytes(), "flat.nii"),
        "truncated": (gzip.compress(gzip.decompress(good)[:600]), "scan.nii.gz"),
        "empty": (b"", "scan.nii.gz"),
        "oversized": (good, "scan.nii.gz"),
        "traversal": (good, "../../etc/scan.nii.gz"),
        "backslash": (good, "..\\scan.nii.gz"),
    }
    del flat
    body, name = bodies[case]
    with TestClient(app, base_url="http://127.0.0.1") as http:
        r = _post(http, body, name)
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert message in detail and "\n" not in detail
        assert str(tmp_path) not in detail  # the server's paths are not shown
        assert list((tmp_path / "data" / "sessions").iterdir()) == []  # nothing left behind


def test_bad_ids_prompts_and_names_are_refused(server, scan_path):
    client, http, *_ = server
    sid = client.upload(scan_path)
    for bad in ("..%2F..%2Fetc", "..", "0" * 31 + "g", "%2e%2e"):
        r = http.get(f"/api/sessions/{bad}/slice", params={"view": "axial", "index": 0})
        assert 400 <= r.status_code < 500
    r = http.get(f"/api/sessions/{'0' * 32}")
    assert r.status_code == 404 and "no session" in r.json()["detail"]
    cases = [
        ({"points": [[70, 0, 0]]}, "outside"),  # index 70 on an axis of 70 voxels
        ({"points": [[1, 2]]}, "shape"),
        ({"points": [[1, 2, 3]], "labels": [2]}, "labels"),
        ({"box": [40, 30, 40, 20, 10, 20]}, "box"),
        ({}, "at least one point"),
    ]
    for body, message in cases:
        r = http.post(f"/api/sessions/{sid}/prompts", json=body)
        assert r.status_code == 400 and message in r.json()["detail"], (body, r.text)
    # a click outside the object's crop re-places it (tests/serve/test_far_clicks.py): the
    # scan is 63 x 44 x 150 mm, so both corners fit in the crop between them
    client.click(sid, [5, 5, 5])
    assert client.click(sid, [69, 39, 59])["step"] == 2
    r = http.get(f"/api/sessions/{sid}/slice", params={"view": "axial", "index": 40})
    assert r.status_code == 400 and "outside" in r.json()["detail"]
    r = http.get(f"/api/sessions/{sid}/slice", params={"view": "oblique", "index": 0})
    assert r.status_code == 422


def test_openapi_schema_lists_the_api(server):
    _, http, *_ = server
    paths = http.get("/openapi.json").json()["paths"]
    assert {
        "/api/sessions",
        "/api/sessions/{sid}/slice",
        "/api/sessions/{sid}/prompts",
        "/api/sessions/{sid}/undo",
        "/api/sessions/{sid}/reset",
        "/api/sessions/{sid}/mask.nii.gz",
    } <= set(paths)
    assert http.get("/").text.startswith("<!doctype html>")
