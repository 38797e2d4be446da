"""End to end in headless Chromium: upload a scan, click, see the overlay and the expert badge.

The browser is Debian's chromium (the test installs it with apt-get when it is missing and this
runs as root) driven by playwright's Python package; playwright downloads no browser of its own.
The test skips, saying why, only where no chromium can be found or installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from tests.serve.conftest import SHAPE, start_server

TOKEN = "browser-test-token-0123456789-abcdefghij"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_or_install_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no chromium, and apt-get is unavailable or this is not root to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    path = shutil.which("chromium")
    if path is None:
        tail = (done.stderr or b"")[-300:]
        pytest.skip(f"chromium could not be installed with apt-get: {tail!r}")
    return path


@pytest.fixture(scope="module", params=["auth", "open"])
def live_server(request, tmp_path_factory):
    """The server with ``--auth`` (the page logs in with the token) and without."""

    from medmoe.moe import Gate, GateConfig, MoEPredictor, MoESam3D
    from medmoe.sam3d import build_mask_decoder, build_sam3d
    from medmoe.serve import ServeConfig, create_app
    from medmoe.serve.auth import AuthConfig

    torch.manual_seed(1)
    base = build_sam3d("tiny")
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    moe = MoESam3D(base=base, experts={"liver": build_mask_decoder(base.config)}, gate=gate, tau=0)
    data = tmp_path_factory.mktemp("serve")
    auth = AuthConfig(token=TOKEN) if request.param == "auth" else None
    app = create_app(predictor=MoEPredictor(moe), config=ServeConfig(data_dir=data), auth=auth)
    server, thread, url = start_server(app)
    yield f"{url}/", app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(live_server):
    chromium = find_or_install_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1400, "height": 900}
        )
        yield context.new_page()
        browser.close()


def wait_for(page, expression: str, timeout: int = 10_000) -> None:
    """Poll ``expression`` in the page until it is true. Playwright's ``wait_for_function``
    evaluates its predicate with ``eval``, which the server's Content-Security-Policy forbids
    (as it should); ``page.evaluate`` goes through the debugger and is not subject to it, so
    the page runs under its real CSP here."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def click_pixel(page, canvas: str, x: int, y: int, *, width: int, height: int, **kw):
    """Click the centre of image pixel ``(x, y)`` of a canvas shown at any CSS size."""
    box = page.locator(canvas).bounding_box()
    page.mouse.click(
        box["x"] + (x + 0.5) / width * box["width"],
        box["y"] + (y + 0.5) / height * box["height"],
        **kw,
    )


def test_upload_click_overlay_badge_undo_save(page, live_server, scan_path, tmp_path):
    url, app = live_server
    store = app.state.store
    if app.state.auth is not None:
        page.goto(url + "?token=" + TOKEN)  # as printed by `medmoe serve --auth`
        wait_for(page, "document.getElementById('login').hidden")
        assert "token" not in page.url  # taken out of the address bar, kept in session storage
        assert page.evaluate("sessionStorage.getItem('medmoe-token')") == TOKEN
    else:
        page.goto(url)  # no token to give
        wait_for(page, "document.getElementById('login').hidden")
    assert page.text_content("#badge") == "—"
    page.set_input_files("#file", str(scan_path))
    wait_for(page, "window.medmoeState.session !== null", timeout=30_000)
    wait_for(page, "document.getElementById('status').textContent.includes('Click')")
    # record whether the progress indicator shows while the encoder runs
    page.evaluate(
        """() => { window.sawBusy = false; const b = document.getElementById('busy');
        new MutationObserver(() => { if (!b.hidden) window.sawBusy = true; })
            .observe(b, {attributes: true}); }"""
    )
    # axial view of the LSA scan: 70 x 60 pixels; pixel (35, 20) of slice 20 (the middle) is
    # voxel i = 35 (x not flipped), j = 20, k = 60 - 1 - 20 = 39 (y flipped)
    click_pixel(page, "#view-axial", 35, 20, width=70, height=60)
    wait_for(
        page,
        "window.medmoeState.lastUpdate && window.medmoeState.lastUpdate.step === 1",
        timeout=60_000,
    )
    session = next(iter(store._entries.values()))
    assert session.steps[-1].points.tolist() == [[35.0, 20.0, 39.0]]
    assert session.steps[-1].labels.tolist() == [1]
    assert page.evaluate("window.sawBusy")
    badge = page.text_content("#badge")
    update = page.evaluate("window.medmoeState.lastUpdate")
    assert update["expert"] == "liver" and badge == f"liver ({round(100 * update['s_top'])}%)"
    assert update["voxels"] > 0
    overlay = int(page.get_attribute("#view-axial", "data-overlay-pixels"))
    expected = int(session.mask()[:, 20, :].sum())  # the mask voxels on the shown slice
    assert overlay == expected > 0

    click_pixel(page, "#view-axial", 10, 50, width=70, height=60, button="right")
    wait_for(page, "window.medmoeState.lastUpdate.step === 2", timeout=30_000)
    assert session.steps[-1].labels.tolist() == [1, 0]
    page.click("#undo")
    wait_for(page, "window.medmoeState.lastUpdate.step === 1", timeout=30_000)
    assert len(session.steps) == 1

    with page.expect_download() as info:
        page.click("#save")
    saved = tmp_path / "saved.nii.gz"
    info.value.save_as(saved)
    img = nib.load(saved)
    assert img.shape == SHAPE and np.allclose(img.affine, nib.load(scan_path).affine, atol=1e-6)
    assert np.array_equal(np.asarray(img.dataobj), session.mask())

    # reset, then a shift-drag box on the coronal view
    page.click("#reset")
    wait_for(page, "window.medmoeState.lastUpdate.step === 0", timeout=30_000)
    assert page.text_content("#badge") == "—"
    box = page.locator("#view-coronal").bounding_box()
    g = session.views["coronal"]
    w, h = g.width, g.height
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + 20.5 / w * box["width"], box["y"] + 15.5 / h * box["height"])
    page.mouse.down()
    page.mouse.move(
        box["x"] + 40.5 / w * box["width"], box["y"] + 30.5 / h * box["height"], steps=4
    )
    page.mouse.up()
    page.keyboard.up("Shift")
    wait_for(page, "window.medmoeState.lastUpdate.step === 1", timeout=30_000)
    step = session.steps[-1]
    assert step.box is not None and len(step.points) == 0
    lo, hi = step.box[:3], step.box[3:]
    assert (lo <= hi).all() and (hi - lo)[g.x_axis] == 20 and (hi - lo)[g.y_axis] == 15


def test_page_without_token_asks_for_it_once(page, live_server):
    """Without ?token= the page shows the login box; the API refuses it meanwhile (401); after
    the token is typed the box goes and the API answers."""
    import httpx

    url, app = live_server
    page.evaluate("sessionStorage.clear()")
    page.goto(url)
    if app.state.auth is None:  # nothing to ask for: the page and the API simply work
        wait_for(page, "document.getElementById('login').hidden")
        assert httpx.get(url + "api/info").status_code == 200
        return
    page.wait_for_selector("#login", state="visible")
    assert httpx.get(url + "api/info").status_code == 401
    page.fill("#token-input", "wrong-token-wrong-token")
    page.click("#token-go")
    wait_for(page, "document.getElementById('login-message').textContent.includes('refused')")
    page.fill("#token-input", TOKEN)
    page.click("#token-go")
    wait_for(page, "document.getElementById('login').hidden")
    assert page.evaluate("sessionStorage.getItem('medmoe-token')") == TOKEN
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url + "api/info", headers=headers).status_code == 200
