"""Corrections anywhere on the object (#32 item 6): a click outside the object's 128^3 crop
re-places the crop around all of its points, through the viewer's API and MONAI Label's
``/infer``, instead of a 400.

The scan is 2 mm voxels, 260 x 100 x 100 mm, with a bright bar 220 mm long. Two clicks on the
bar 75 voxels (150 mm) apart do not fit in the 192 mm crop around the first (it reaches 94.5 mm
above its centre), but fit in the crop centred between them: the world middle is at 125 mm,
voxel 62.5, rounded half to even to 62.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tests.serve.conftest import start_server

from medmoe.data import Sam3DCrop, load_volume, save_volume
from medmoe.serve import ServeConfig, create_app
from medmoe.serve.client import MedmoeClient, ServerError
from medmoe.serve.engine import Decoded

SHAPE = (130, 50, 50)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
NEAR, FAR = [25, 25, 25], [100, 25, 25]  # 150 mm apart along the bar
CENTRE = [62, 25, 25]  # the crop around both (see the module docstring)
BALL = 5  # the stub decoder's ball radius, in crop voxels (7.5 mm)


@pytest.fixture(scope="module")
def long_scan(tmp_path_factory):
    image = np.random.default_rng(1).normal(20, 4, SHAPE).astype(np.float32)
    image[10:120, 15:35, 15:35] += 100  # the bar: 220 mm along i
    path = tmp_path_factory.mktemp("far") / "bar.nii.gz"
    save_volume(path, image, AFFINE)
    return path


def stub(engine) -> None:
    """The engine answers a ball around each positive point (in crop voxels): so each click's
    own mark on the mask can be seen, and no model runs."""

    def decode(features, *, points, labels, box, mask_input):
        grid = np.stack(np.indices((engine.size,) * 3), -1)
        mask = np.zeros((engine.size,) * 3, dtype=bool)
        for p, lab in zip(points, labels, strict=True):
            if lab == 1:
                mask |= np.linalg.norm(grid - p, axis=-1) <= BALL
        return Decoded(mask, torch.zeros(1, 1, 32, 32, 32), 1.0, "general", None, None)

    engine.encode = lambda image: torch.zeros(1)
    engine.decode = decode


def check_both_clicks_shape(mask: np.ndarray) -> None:
    assert mask[tuple(NEAR)] and mask[tuple(FAR)]  # each click marked its own place
    assert not mask[tuple(CENTRE)]  # and nothing between: two balls, not a filled crop
    # each ball is 7.5 mm = 3.75 voxels in radius, on the 2 mm grid: 3 voxels each side
    assert mask[NEAR[0] + 3, 25, 25] and not mask[NEAR[0] + 5, 25, 25]
    assert mask[FAR[0] - 3, 25, 25] and not mask[FAR[0] - 5, 25, 25]


@pytest.fixture
def app(tmp_path, tiny_predictor):
    return create_app(predictor=tiny_predictor, config=ServeConfig(data_dir=tmp_path / "data"))


def test_viewer_click_150_mm_away_re_places_the_crop(app, long_scan, tmp_path):
    stub(app.state.store.engine)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        client = MedmoeClient(http=http)
        sid = client.upload(long_scan)
        client.click(sid, NEAR)
        update = client.click(sid, FAR)  # today: 400, outside this object's crop
        assert update["step"] == 2
        mask = np.asarray(nib.load(client.download(sid, tmp_path / "m.nii.gz")).dataobj)
        check_both_clicks_shape(mask)
        assert update["voxels"] == int(mask.sum())
        # undo goes back to the first crop and its one ball exactly
        client.undo(sid)
        mask = np.asarray(nib.load(client.download(sid, tmp_path / "u.nii.gz")).dataobj)
        assert mask[tuple(NEAR)] and not mask[tuple(FAR)]


def test_monailabel_infer_150_mm_apart_re_places_the_crop(app, long_scan, tmp_path):
    client_mod = pytest.importorskip("monailabel.client.client")
    stub(app.state.store.engine)
    server, thread, url = start_server(app)
    try:
        client = client_mod.MONAILabelClient(url, tmpdir=str(tmp_path))
        client.upload_image(str(long_scan), image_id="bar")
        model = next(iter(client.info()["models"]))
        label, reply = client.infer(model, "bar", {"foreground": [NEAR, FAR], "background": []})
        check_both_clicks_shape(np.asarray(nib.load(label).dataobj))
        assert reply["voxels"] > 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_re_placed_crop_is_the_library_crop_around_both(app, long_scan, tmp_path):
    """With the real (tiny) model: the mask after the far click is the library's for the crop
    centred on voxel 62 with both clicks (and no mask prompt: the first click's logits lie
    in the old crop)."""
    predictor = app.state.store.engine.predictor
    vol = load_volume(long_scan)
    crop = Sam3DCrop.around_point(vol, np.array(CENTRE, dtype=float))
    predictor.set_image(crop.image)
    pred = predictor.predict(
        points=crop.to_crop_coords(np.array([NEAR, FAR], float)), labels=np.array([1, 1])
    )
    predictor.reset_image()
    expected = crop.invert(pred.mask[0, 0].numpy())
    with TestClient(app, base_url="http://127.0.0.1") as http:
        client = MedmoeClient(http=http)
        sid = client.upload(long_scan)
        client.click(sid, NEAR)
        client.click(sid, FAR)
        mask = np.asarray(nib.load(client.download(sid, tmp_path / "m.nii.gz")).dataobj)
    assert np.array_equal(mask.astype(bool), expected)


def test_points_over_more_than_one_crop_are_refused(app, long_scan):
    stub(app.state.store.engine)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        client = MedmoeClient(http=http)
        sid = client.upload(long_scan)
        client.click(sid, [2, 25, 25])
        with pytest.raises(ServerError, match="more than one 128\\^3 crop") as err:
            client.click(sid, [128, 25, 25])  # 252 mm apart: over the crop's 190.5 mm
        assert err.value.status == 400
        assert client.session(sid)["steps"] == 1  # the refused click left nothing
