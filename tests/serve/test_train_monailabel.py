"""Continual learning through MONAI Label's own client (0.8.5: ``train_start``,
``train_status``, ``train_stop``, ``next_sample``) against a real uvicorn server on loopback,
with a tiny random-weights MoE bundle and a synthetic datastore of five scans: four with
submitted labels of ``spleen`` (a structure the bundle has no expert for) and ``kidney``, one
without (held out, and the one Next sample offers).

A random-weights model learns nothing in one epoch, so the guard here is set to accept any
bundle (min_ratio 0, no gain asked): what is tested is the protocol, the one-job rule, the
stop, the versioned folders and the swap without a restart. The guard's refusals are tested
in tests/continual/test_guard.py and test_pipeline.py.
"""

from __future__ import annotations

import time

import pytest
from tests.continual.conftest import write_scan
from tests.serve.conftest import start_server

monailabel_client = pytest.importorskip(
    "monailabel.client.client", reason="pip install --no-deps monailabel==0.8.5 (and requests)"
)
MONAILabelClient = monailabel_client.MONAILabelClient
ClientError = monailabel_client.MONAILabelClientException
MODEL = "medmoe_moe"
TOKEN = "train-test-token-0123456789-abcdefghijklmn"
PASSWORD = "a-password-for-tests"
LABEL_INFO = [{"name": "spleen", "idx": 1}, {"name": "kidney", "idx": 2}]
SPLEEN = [[18, 17, 18]]  # inside the box of case4 (seed 4), IJK


@pytest.fixture(scope="module")
def live(bundle, tmp_path_factory):
    from medmoe.continual import ContinualConfig
    from medmoe.moe import MoEPredictor, load_moe_bundle
    from medmoe.serve import ServeConfig, create_app
    from medmoe.serve.auth import AuthConfig, User, hash_password
    from medmoe.serve.monailabel.train_routes import TrainingConfig

    root = tmp_path_factory.mktemp("train")
    users = {
        name: User(hash=hash_password(PASSWORD, iterations=1000), role=role)
        for name, role in (("rita", "reviewer"), ("anna", "annotator"))
    }
    continual = ContinualConfig(
        min_ratio=0.0, require_new_gain=False, crops_per_label=1, replay_clicks=1,
        warmup_epochs=0, device="cpu",
    )  # fmt: skip
    app = create_app(
        predictor=MoEPredictor(load_moe_bundle(bundle)),
        config=ServeConfig(data_dir=root / "data"),
        auth=AuthConfig(token=TOKEN, users=users),
        training=TrainingConfig(
            bundle=bundle, continual=continual, worker_env={"OMP_NUM_THREADS": "1"}
        ),
    )
    server, thread, url = start_server(app)
    yield url, app, root
    server.should_exit = True
    thread.join(timeout=10)


def _client(url: str, user: str = "rita") -> MONAILabelClient:
    client = MONAILabelClient(url)
    client.update_auth(client.auth_token(user, PASSWORD))
    return client


def _wait(client: MONAILabelClient, deadline_s: float = 600) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        record = client.train_status()
        if record["status"] not in ("SUBMITTED", "RUNNING"):
            return record
        time.sleep(0.5)
    raise AssertionError(f"the job did not end: {record}")


def test_datastore_next_sample_and_info(live):
    url, app, root = live
    client = _client(url)
    for i in range(5):
        image, label = write_scan(root, f"case{i}", seed=i)
        client.upload_image(str(image), image_id=f"case{i}")
        if i < 4:
            client.save_label(f"case{i}", str(label), params={"label_info": LABEL_INFO})
    info = client.info()
    assert info["trainers"][MODEL]["config"] == {"expert": "", "label": "", "max_epochs": 10}
    assert sorted(info["strategies"]) == ["first", "random"]
    for strategy in ("first", "random"):  # the one scan without a label
        assert client.next_sample(strategy, {}) == {
            "id": "case4", "name": "case4.nii.gz", "strategy": strategy,
        }  # fmt: skip
    with pytest.raises(ClientError, match="Status: 404"):
        client.next_sample("entropy", {})
    with pytest.raises(ClientError, match="Status: 404"):
        client.train_status()  # no job yet
    assert client.train_status(check_if_running=True) is False


def test_roles_and_bad_params(live):
    url, _, _ = live
    with pytest.raises(ClientError, match="Status: 403"):
        _client(url, "anna").train_start(MODEL, {"expert": "spleen", "label": "spleen"})
    with pytest.raises(ClientError, match="Status: 403"):
        _client(url, "anna").train_stop()
    client = _client(url)
    for params in ({"expert": "../x", "label": "spleen"},
                   {"expert": "spleen", "label": "spleen", "lr": 1}):  # fmt: skip
        with pytest.raises(ClientError, match="Status: 400"):
            client.train_start(MODEL, params)
    # a label no scan has is found out by the job, which ends in ERROR with one line
    client.train_start(MODEL, {"expert": "spleen", "label": "no-such-label"})
    record = _wait(client)
    assert record["status"] == "ERROR" and "is on 0 scan(s)" in record["error"]
    with pytest.raises(ClientError, match="Status: 404"):
        client.train_start("segmentation", {"expert": "spleen", "label": "spleen"})


def test_stop_leaves_the_old_bundle_serving(live):
    url, app, root = live
    client = _client(url)
    record = client.train_start(MODEL, {"expert": "spleen", "label": "spleen", "max_epochs": 500})
    assert record["status"] == "RUNNING"
    for _ in range(600):  # until the worker reports (it is past its imports)
        if client.train_status()["stage"] != "submitted":
            break
        time.sleep(0.1)
    with pytest.raises(ClientError, match="Status: 409"):
        client.train_start(MODEL, {"expert": "spleen", "label": "spleen"})
    assert client.train_status(check_if_running=True) is True
    # the server keeps answering while the job runs
    _, reply = client.infer(MODEL, "case4", {"foreground": SPLEEN, "background": []})
    assert reply["model"] == MODEL and reply["voxels"] >= 0
    stopped = client.train_stop()
    assert stopped["status"] == "STOPPED"
    assert client.train_status()["status"] == "STOPPED"
    assert client.train_status(check_if_running=True) is False
    assert client.info()["models"][MODEL]["experts"] == ["liver"]
    models = root / "data" / "monailabel" / "models" / MODEL
    assert not models.exists() or not any(models.iterdir())  # no version, no .part


def test_train_to_completion_swaps_without_a_restart(live):
    from medmoe.moe import load_moe_bundle

    url, app, root = live
    client = _client(url)
    _, before = client.infer(MODEL, "case4", {"foreground": SPLEEN, "background": []})
    client.train_start(MODEL, {"expert": "spleen", "label": "spleen", "max_epochs": 1})
    record = _wait(client)
    assert record["status"] == "DONE", record.get("error")
    result = record["result"]
    assert result["accepted"] and result["version"] == "v0001"
    assert result["experts"] == ["liver", "spleen"]
    assert "| spleen | new | labels |" in result["table"]
    assert record["served"] is True
    # served from the next click on, same process, same embedding cache
    assert client.info()["models"][MODEL]["experts"] == ["liver", "spleen"]
    _, after = client.infer(MODEL, "case4", {"foreground": SPLEEN, "background": []})
    assert set(after["gate_probs"]) == {"none", "liver", "spleen"}
    assert not after["encoded"] and before["model"] == MODEL  # the cached embedding served
    models = root / "data" / "monailabel" / "models" / MODEL
    assert sorted(p.name for p in models.iterdir()) == ["current.json", "v0001"]
    assert load_moe_bundle(models / "v0001").expert_names == ["liver", "spleen"]
    job = root / "data" / "monailabel" / "train" / record["id"]
    assert (job / "table.md").is_file() and (job / "log.jsonl").is_file()
    assert "/" not in str(record["result"].get("version"))  # no server path reaches a client
