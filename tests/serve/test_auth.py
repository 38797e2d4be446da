"""Authentication: MONAI Label's login through its own client, bearer tokens on every endpoint,
expiry, and ``medmoe serve`` refusing to listen beyond loopback without ``--auth``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from tests.serve.conftest import start_server
from tests.serve.test_monailabel import FG, MODEL, ClientError, MONAILabelClient

from medmoe.cli.main import main
from medmoe.serve.auth import (
    AuthConfig,
    Authenticator,
    hash_password,
    load_users,
    verify_password,
)

TOKEN = "server-token-for-the-tests-0123456789"  # at least MIN_TOKEN_CHARS (32)
PASSWORD = "correct horse battery"
TTL = 600.0


@pytest.fixture(scope="module")
def auth_live(bundle, tmp_path_factory):
    from medmoe.moe import MoEPredictor, load_moe_bundle
    from medmoe.serve import ServeConfig, create_app

    now = [1000.0]
    users = {"alice": hash_password(PASSWORD, iterations=1000)}  # few iterations: a fast test
    auth = Authenticator(
        config=AuthConfig(token=TOKEN, users=users, token_ttl_s=TTL), clock=lambda: now[0]
    )
    data = tmp_path_factory.mktemp("auth") / "data"
    app = create_app(
        predictor=MoEPredictor(load_moe_bundle(bundle)),
        config=ServeConfig(data_dir=data),
        auth=auth,
    )
    server, thread, url = start_server(app)
    yield url, now
    server.should_exit = True
    thread.join(timeout=10)


def test_monailabel_client_logs_in_and_tokens_expire(auth_live, scan_path, tmp_path):
    url, now = auth_live
    client = MONAILabelClient(url, tmpdir=str(tmp_path))
    assert client.auth_enabled()  # /auth/ answers without a token: the client asks it first
    with pytest.raises(ClientError) as err:
        client.info()
    assert err.value.status_code == 401
    for user, password in (("alice", "wrong"), ("mallory", PASSWORD), ("token", "nope"), ("", "")):
        with pytest.raises(ClientError) as err:
            client.auth_token(user, password)
        assert err.value.status_code == 401
    token = client.auth_token("alice", PASSWORD)
    assert token["token_type"] == "bearer" and PASSWORD not in token["access_token"]
    client.update_auth(token)
    assert client.auth_valid_token()
    assert MODEL in client.info()["models"]
    client.upload_image(str(scan_path), image_id="a")
    result, params = client.infer(MODEL, "a", {"foreground": FG[:1]})
    assert params["voxels"] > 0

    now[0] += TTL - 1  # still valid one second before the end of its life
    assert client.auth_valid_token()
    now[0] += 2
    assert not client.auth_valid_token()
    with pytest.raises(ClientError) as err:
        client.info()
    assert err.value.status_code == 401
    # a fresh login works again, and so does the server token under the user name "token"
    client.update_auth(client.auth_token("token", TOKEN))
    assert client.auth_valid_token() and client.datastore()["objects"]["a"]


def test_every_endpoint_but_the_page_needs_a_token(auth_live):
    url, now = auth_live
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url + "/").status_code == 200
    assert httpx.get(url + "/viewer.js").status_code == 200
    assert httpx.get(url + "/auth/").json()["enabled"] is True
    for path in ("/api/info", "/info/", "/datastore/?output=all", "/openapi.json", "/docs"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert httpx.get(url + path, headers=bearer).status_code == 200, path
    r = httpx.post(url + "/api/sessions", content=b"x" * 1000)
    assert r.status_code == 401  # refused before the body is read or stored
    login = httpx.post(url + "/auth/token", data={"username": "alice", "password": PASSWORD})
    issued = login.json()["access_token"]
    payload, mac = issued.split(".")
    for header in (
        f"Bearer {issued[:-2]}xx",  # tampered signature
        f"Bearer {payload}.{mac[::-1]}",
        f"Basic {TOKEN}",  # wrong scheme
        f"Bearer {TOKEN[:-1]}",
        "Bearer",
    ):
        assert httpx.get(url + "/api/info", headers={"Authorization": header}).status_code == 401
    assert httpx.get(url + "/api/info", headers={"Authorization": f"bearer {issued}"}).is_success


def test_passwords_hash_and_verify():
    stored = hash_password("s3cret-pass", iterations=1000, salt=b"0123456789abcdef")
    # pbkdf2-hmac-sha256, 1000 rounds: the same derivation as hashlib's, by hand
    import base64
    import hashlib

    expected = hashlib.pbkdf2_hmac("sha256", b"s3cret-pass", b"0123456789abcdef", 1000)
    assert stored.split("$")[:2] == ["pbkdf2_sha256", "1000"]
    assert base64.urlsafe_b64decode(stored.split("$")[3] + "=") == expected
    assert verify_password("s3cret-pass", stored) and not verify_password("s3cret-pasS", stored)
    assert not verify_password("x", "md5$1$aa$bb") and not verify_password("x", "garbage")


@pytest.mark.parametrize(
    "text, message",
    [
        ("alice\n", "line 1: expected NAME:pbkdf2_sha256"),
        ("# nobody\n", "no users"),
        ("token:pbkdf2_sha256$1$a$b\n", "reserved"),
    ],
)
def test_bad_users_files(tmp_path, text, message):
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_users(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--host", "0.0.0.0"],
            "--host 0.0.0.0 exposes the server beyond this machine: add --auth",
        ),
        (["--host", "192.168.1.20"], "add --auth"),
        (["--host", "::"], "add --auth"),
        (["--host", "myserver.lab"], "add --auth"),
        (["--users", "users.txt"], "--users needs --auth"),
        (["--auth", "--users", "missing.txt"], "no such file"),
        (["--token-ttl", "0"], "--token-ttl must be positive"),
        (["--auth", "SHORT_TOKEN"], "at least 32 characters"),
    ],
)
def test_serve_refuses_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    """Refused before the model loads (the checkpoint does not even exist): exit 2, one line."""
    monkeypatch.chdir(tmp_path)
    if "SHORT_TOKEN" in argv:
        argv = [a for a in argv if a != "SHORT_TOKEN"]
        monkeypatch.setenv("MEDMOE_SERVE_TOKEN", "too-short")
    rc = main(["serve", "--checkpoint", "absent.pth", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err


def test_serve_with_auth_as_a_process(bundle, tmp_path):
    """``medmoe serve --auth --users FILE`` end to end: the token comes from the environment and
    is not printed; a login works; neither the password nor a token reaches the output."""
    import socket

    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password(PASSWORD, iterations=1000)}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDMOE_SERVE_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "medmoe", "serve", "--moe", str(bundle), "--port", str(port)]
    cmd += ["--auth", "--users", str(users), "--data-dir", str(tmp_path / "d"), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/auth/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.1)
        client = MONAILabelClient(url)
        with pytest.raises(ClientError):
            client.auth_token("alice", "not the password")
        token = client.auth_token("alice", PASSWORD)
        client.update_auth(token)
        assert client.info()["models"][MODEL]["type"] == "deepgrow"
        assert httpx.get(url + "/info/").status_code == 401
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}/?token=<MEDMOE_SERVE_TOKEN>" in out
    for secret in (TOKEN, PASSWORD, "not the password", token["access_token"]):
        assert secret not in out


def test_hash_password_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "medmoe.serve.auth", "bob"],
        input="a long password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    name, stored = done.stdout.strip().split(":", 1)
    assert name == "bob" and verify_password("a long password", stored)
    assert "a long password" not in done.stdout
