"""The train request from a client's params, and the job spec's JSON round trip."""

from __future__ import annotations

import pytest

from medmoe.continual import CaseSpec, ContinualConfig, JobSpec, TrainRequest
from medmoe.errors import InputError


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"expert": "spleen", "label": "spleen"}, TrainRequest("spleen", "spleen", 10)),
        # MONAI Label's client adds client_id; Slicer's config fields may send text
        ({"expert": "k-1", "label": "kidney L", "max_epochs": "3", "client_id": None},
         TrainRequest("k-1", "kidney L", 3)),
    ],
)  # fmt: skip
def test_request_from_params(params, expected):
    assert TrainRequest.from_params(params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label": "x"}, "need expert"),
        ({"expert": "x"}, "need label"),
        ({"expert": "x", "label": "x", "lr": 1}, "unknown key"),
        ({"expert": "../x", "label": "x"}, "refused"),
        ({"expert": "", "label": "x"}, "refused"),
        ({"expert": "x", "label": " "}, "label must"),
        ({"expert": "x", "label": "x", "max_epochs": True}, "integer"),
        ({"expert": "x", "label": "x", "max_epochs": 0}, "1..1000"),
        ({"expert": "x", "label": "x", "max_epochs": 2.5}, "integer"),
        ([1, 2], "JSON object"),
    ],
)
def test_request_refuses(params, message):
    with pytest.raises(InputError, match=message):
        TrainRequest.from_params(params)


def test_config_refuses_unknown_keys_and_bad_values():
    with pytest.raises(InputError, match="unknown key"):
        ContinualConfig.from_dict({"min_ratio": 0.9, "typo": 1})
    with pytest.raises(InputError, match="min_ratio"):
        ContinualConfig(min_ratio=1.5)
    with pytest.raises(InputError, match="holdout_fraction"):
        ContinualConfig(holdout_fraction=1.0)


def test_job_spec_round_trip(tmp_path):
    spec = JobSpec(
        job_id="j1", request=TrainRequest("spleen", "spleen", 2),
        config=ContinualConfig(min_ratio=0.9), bundle="/b", version_dir="/v/v0001",
        job_dir=str(tmp_path), cases=(CaseSpec("a", "/a.nii.gz", "/a_l.nii.gz", {"spleen": 1}),),
    )  # fmt: skip
    spec.write(tmp_path / "spec.json")
    assert JobSpec.from_json((tmp_path / "spec.json").read_text()) == spec
