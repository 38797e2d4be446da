"""The MONAI Label API through MONAI Label's own client (the code Slicer's module carries),
against a real uvicorn server on loopback, with a tiny MoE bundle loaded from disk."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
from tests.serve.conftest import AFFINE, SHAPE, start_server

from medmoe.cli.main import main

monailabel_client = pytest.importorskip(
    "monailabel.client.client", reason="pip install --no-deps monailabel==0.8.5 (and requests)"
)
MONAILabelClient = monailabel_client.MONAILabelClient
ClientError = monailabel_client.MONAILabelClientException
MODEL = "medmoe_moe"
FG = [[30, 20, 25], [34, 22, 27]]  # IJK voxel indices of the scan as stored
BG = [[38, 20, 40]]


TOKEN = "monailabel-test-token-0123456789-abcdefghij"


@pytest.fixture(scope="module", params=["open", "auth"])
def live(request, bundle, tmp_path_factory):
    """The server without authentication, and with ``--auth`` (the client then logs in as the
    user ``token``, as Slicer's module would)."""
    from medmoe.moe import MoEPredictor, load_moe_bundle
    from medmoe.serve import ServeConfig, create_app
    from medmoe.serve.auth import AuthConfig

    data = tmp_path_factory.mktemp("ml") / "data"
    auth = AuthConfig(token=TOKEN) if request.param == "auth" else None
    app = create_app(
        predictor=MoEPredictor(load_moe_bundle(bundle)),
        config=ServeConfig(data_dir=data),
        auth=auth,
    )
    server, thread, url = start_server(app)
    yield url, app, data
    server.should_exit = True
    thread.join(timeout=10)


def _client(url: str, app, **kw) -> MONAILabelClient:
    """MONAI Label's client, logged in when the server needs it."""
    client = MONAILabelClient(url, **kw)
    assert client.auth_enabled() is (app.state.auth is not None)
    if app.state.auth is not None:
        client.update_auth(client.auth_token("token", TOKEN))
    return client


def _headers(app) -> dict:
    return {"Authorization": f"Bearer {TOKEN}"} if app.state.auth is not None else {}


def cli_segment(bundle, scan, fg, bg, out, capsys, box=None) -> tuple[np.ndarray, str]:
    """``medmoe segment`` with the same points: its mask and the expert it names."""
    argv = ["segment", "--image", str(scan), "--moe", str(bundle), "--out", str(out)]
    if box is not None:
        argv += ["--box", ",".join(map(str, box))]
    for p in fg:
        argv += ["--point", ",".join(map(str, p)) + ",1"]
    for p in bg:
        argv += ["--point", ",".join(map(str, p)) + ",0"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    expert = re.search(r"expert: (\S+)", said).group(1)
    return np.asarray(nib.load(out).dataobj), expert


def test_info_lists_one_deepgrow_model(live):
    url, app, _ = live
    client = _client(url, app)
    info = client.info()
    assert list(info["models"]) == [MODEL]
    model = info["models"][MODEL]
    assert model["type"] == "deepgrow" and model["dimension"] == 3
    assert model["experts"] == ["liver"] and "liver" in model["description"]
    assert info["labels"] == ["object"]


def test_upload_infer_matches_segment_and_reuses_the_embedding(
    live, bundle, scan_path, tmp_path, capsys
):
    url, app, _ = live
    assert nib.aff2axcodes(AFFINE) == ("L", "S", "A")  # not RAS: IJK must stay the file's own
    client = _client(url, app, tmpdir=str(tmp_path))
    assert client.upload_image(str(scan_path), image_id="case 1") == {"image": "case 1"}
    assert "case 1" in client.datastore()["objects"]
    engine = app.state.store.engine
    runs = len(engine.encoder_seconds)

    params = {"foreground": FG[:1], "background": BG, "label": "tumour"}
    first, reply = client.infer(MODEL, "case 1", params)
    params = {"foreground": FG, "background": BG, "label": "tumour"}
    second, reply2 = client.infer(MODEL, "case 1", params)
    assert reply["encoded"] and not reply2["encoded"]
    assert len(engine.encoder_seconds) == runs + 1  # the encoder ran once for both clicks

    img = nib.load(second)
    assert img.shape == SHAPE and np.allclose(img.affine, AFFINE, atol=1e-6)
    got = np.asarray(img.dataobj)
    expected, expert = cli_segment(bundle, scan_path, FG, BG, tmp_path / "ref.nii.gz", capsys)
    assert got.dtype == np.uint8 and 0 < expected.sum() < expected.size
    assert np.array_equal(got, expected)
    assert reply2["voxels"] == int(expected.sum())
    assert reply2["expert"] == expert == "liver"
    assert reply2["s_top"] == pytest.approx(reply2["gate_probs"]["liver"]) and reply2["s_top"] > 0
    assert reply2["label_names"] == {"tumour": 1}

    # NRRD, as Slicer asks for it: the same voxels and affine, read through SimpleITK (LPS)
    from medmoe.data import load_label

    nrrd, _ = client.infer(MODEL, "case 1", {**params, "result_extension": ".nrrd"})
    assert nrrd.endswith(".nrrd") and b"left-posterior-superior" in Path(nrrd).read_bytes()[:400]
    vol = load_label(nrrd)
    assert np.array_equal(vol.array, expected) and np.allclose(vol.affine, AFFINE, atol=1e-6)
    raw, _ = client.infer(
        MODEL, "case 1", {**params, "result_extension": ".nrrd", "result_compress": False}
    )
    assert b"encoding: raw" in Path(raw).read_bytes()[:400]  # as OHIF asks for it
    assert np.array_equal(load_label(raw).array, expected)


def test_save_label_then_download_unchanged(live, scan_path, tmp_path):
    url, app, _ = live
    client = _client(url, app, tmpdir=str(tmp_path))
    client.upload_image(str(scan_path), image_id="case 2")
    result, _ = client.infer(MODEL, "case 2", {"foreground": FG[:1]})
    edited = np.asarray(nib.load(result).dataobj).copy()
    edited[:, :, :30] = 0  # the user's correction
    edited[5:8, 5:8, 5:8] = 2
    path = tmp_path / "edited.nii.gz"
    nib.save(nib.Nifti1Image(edited, AFFINE), str(path))
    assert client.save_label("case 2", str(path), tag="final") == {
        "image": "case 2",
        "label": "case 2",
    }
    back = client.download_label("case 2", "final")
    assert Path(back).read_bytes() == path.read_bytes()
    assert client.datastore()["objects"]["case 2"]["labels"]["final"]["ext"] == ".nii.gz"


def test_sessions_hold_a_temporary_image(live, scan_path, tmp_path):
    url, app, data = live
    client = _client(url, app, tmpdir=str(tmp_path))
    sid = client.create_session(str(scan_path))["session_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", sid) and client.get_session(sid)["name"] == sid
    assert (data / "monailabel-sessions" / sid).is_dir()
    client.upload_image(str(scan_path), image_id="case 3")
    by_session, _ = client.infer(MODEL, "case 3", {"foreground": FG[:1]}, session_id=sid)
    by_id, _ = client.infer(MODEL, "case 3", {"foreground": FG[:1]})
    a, b = (np.asarray(nib.load(p).dataobj) for p in (by_session, by_id))
    assert np.array_equal(a, b) and a.sum() > 0
    client.remove_session(sid)
    assert not (data / "monailabel-sessions" / sid).exists()
    with pytest.raises(ClientError) as err:
        client.get_session(sid)
    assert err.value.status_code == 404


def _put(url, path, *, filename, params="{}", field="file", headers=None):
    files = {field: (filename, b"x" if path is None else path.read_bytes())}
    return httpx.put(url, files=files, data={"params": params}, headers=headers)


def test_traversal_and_bad_requests_get_4xx(live, scan_path, tmp_path):
    url, app, data = live
    client = _client(url, app, tmpdir=str(tmp_path))
    client.upload_image(str(scan_path), image_id="case 4")
    for bad_id in ("../../escape", "..", ".hidden", "a/b", "a\\b"):
        with pytest.raises(ClientError, match="Status: 400"):
            client.upload_image(str(scan_path), image_id=bad_id)
    for tag in ("../../x", "..", "a/b", "x y"):
        with pytest.raises(ClientError, match="Status: 400"):
            client.save_label("case 4", str(scan_path), tag=tag)
    for label, tag in (("../../etc/passwd", "final"), ("case 4", ".."), ("nope", "final")):
        with pytest.raises(ClientError) as err:
            client.download_label(label, tag)
        assert 400 <= err.value.status_code < 500
    r = _put(
        url + "/datastore/?image=ok", scan_path, filename="../../x.nii.gz", headers=_headers(app)
    )
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    r = _put(
        url + "/datastore/?image=ok",
        scan_path,
        filename="x.nii.gz",
        params="[1]",
        headers=_headers(app),
    )
    assert r.status_code == 400 and "params" in r.json()["detail"]
    r = _put(url + "/datastore/?image=ok", None, filename="x.nii.gz", headers=_headers(app))
    assert r.status_code == 415
    for params, message in [
        ({"foreground": [[1, 2]]}, "foreground must be"),
        ({}, "at least one"),
        ({"foreground": [[70, 0, 0]]}, "outside the image"),
        ({"foreground": FG[:1], "result_extension": ".png"}, "result_extension"),
    ]:
        with pytest.raises(ClientError, match="Status: 400") as err:
            client.infer(MODEL, "case 4", params)
        assert message in err.value.msg
    with pytest.raises(ClientError, match="Status: 404"):
        client.infer("other", "case 4", {"foreground": FG[:1]})
    r = httpx.get(url + "/session/..%2F..%2Fetc", headers=_headers(app))
    assert 400 <= r.status_code < 500
    # every file lies under the data folder, named by the server (hash of the id), none by a client
    names = [p.name for p in (data / "monailabel" / "images").iterdir()]
    assert names and all(re.fullmatch(r"[0-9a-f]{32}\.nii\.gz", n) for n in names), names
    assert not (tmp_path.parent / "escape").exists() and not (data.parent / "escape").exists()


def test_roi_is_a_box_prompt_as_segment_box(live, bundle, scan_path, tmp_path, capsys):
    """Slicer's ``roi`` ([i1, i2, j1, j2, k1, k2], pairs in any order) is ``--box``."""
    url, app, _ = live
    client = _client(url, app, tmpdir=str(tmp_path))
    client.upload_image(str(scan_path), image_id="case 5")
    roi = [40, 20, 10, 30, 40, 20]  # i from 40 down to 20: corners taken from RAS
    result, reply = client.infer(MODEL, "case 5", {"foreground": FG[:1], "roi": roi})
    box = [20, 10, 20, 40, 30, 40]
    expected, _ = cli_segment(bundle, scan_path, FG[:1], [], tmp_path / "b.nii.gz", capsys, box)
    assert np.array_equal(np.asarray(nib.load(result).dataobj), expected) and expected.any()
    with pytest.raises(ClientError, match="roi must be"):
        client.infer(MODEL, "case 5", {"roi": [1, 2, 3]})
