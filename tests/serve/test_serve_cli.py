"""``medmoe serve``'s DICOMweb, CORS and training options (#29, #32): refusals in one line
before the model loads, ``--train`` mounting MONAI Label's trainer, and the help text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from medmoe.cli.main import build_parser, main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cors-origin", "*"], "--cors-origin '*' is refused: name each origin"),
        (["--allow-origin", "*"], "--cors-origin '*' is refused"),  # the alias, same check
        (["--cors-origin", "http://localhost:3000/ohif"], "an origin has no path"),
        (["--cors-origin", "localhost:3000"], "expected http(s)://HOST[:PORT]"),
        (["--studies", "orthanc:8042/dicom-web"], "--studies 'orthanc:8042/dicom-web'"),
        (["--train"], "--train needs --moe BUNDLE"),
    ],
)
def test_serve_refuses_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    """Refused before the model loads (the checkpoint does not even exist): exit 2, one line."""
    monkeypatch.chdir(tmp_path)
    rc = main(["serve", "--checkpoint", "absent.pth", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err


def test_train_refuses_studies_and_a_missing_bundle(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["serve", "--moe", "absent", "--train", "--studies", "http://127.0.0.1:8042/dicom-web"]
    assert main(argv) == 2
    assert "--train learns from the local datastore's labels" in capsys.readouterr().err
    assert main(["serve", "--moe", "absent", "--train"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--moe absent: --train needs a bundle folder" in err and len(err.splitlines()) == 1


def _served_app(argv, monkeypatch):
    """The app ``medmoe serve ARGV`` would hand to uvicorn."""
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    assert main(["serve", *argv]) == 0
    return served["app"]


@pytest.mark.parametrize("train", [True, False])
def test_train_flag_mounts_the_trainer(train, bundle, tmp_path, monkeypatch):
    argv = ["--moe", str(bundle), "--device", "cpu", "--data-dir", str(tmp_path / "d")]
    app = _served_app([*argv, "--train"] if train else argv, monkeypatch)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        trainers = http.get("/info/").json()["trainers"]
        assert list(trainers) == (["medmoe_moe"] if train else [])
        r = http.get("/train/")
        # with a trainer and no job yet, MONAI Label's 404 "no job"; without one, no route at all
        assert r.status_code == 404
        assert ("no training job" in r.json()["detail"]) is train
        # Next sample exists either way (an empty datastore has nothing to offer)
        assert http.post("/activelearning/first").json() == {}


def test_help_names_ohif_without_promising_it_logins():
    sub = build_parser()._subparsers._group_actions[0].choices["serve"]
    options = {a.option_strings[0]: a.help for a in sub._actions if a.option_strings}
    assert "OHIF's extension sends no login" in options["--users"]
    assert "3D Slicer" in options["--users"]
    assert "without credentials" in options["--cors-origin"]
    assert "admin and reviewer" in options["--train"]


def test_studies_and_cors_origin_reach_the_app(bundle, tmp_path, monkeypatch):
    """``--studies`` makes MONAI Label's datastore the DICOMweb server's (here one that is not
    there: a one-line 502), ``--cors-origin`` answers OHIF's preflight and no other origin's."""
    from tests.serve.orthanc import free_port

    from medmoe.serve.monailabel.dicomweb_datastore import DicomWebDatastore

    ohif = "http://localhost:3000"
    studies = f"http://127.0.0.1:{free_port()}/dicom-web"
    argv = ["--moe", str(bundle), "--device", "cpu", "--data-dir", str(tmp_path / "d")]
    app = _served_app([*argv, "--studies", studies, "--cors-origin", ohif], monkeypatch)
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    with TestClient(app, base_url="http://127.0.0.1") as http:
        assert isinstance(app.state.datastore, DicomWebDatastore)
        assert app.state.datastore.client.url == studies
        r = http.options("/infer/medmoe_moe", headers={"Origin": ohif, **ask})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ohif
        r = http.options("/infer/medmoe_moe", headers={"Origin": "http://localhost:3001", **ask})
        assert "access-control-allow-origin" not in r.headers
        r = http.get("/datastore/?output=all")
        assert r.status_code == 502 and len(r.json()["detail"].splitlines()) == 1
