from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmoe.cli.main import main


def retina_jpg() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        pytest.skip(
            "scikit-image (it bundles retina.jpg) is not installed: pip install 'medmoe[dev]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "retina.jpg"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fundus") / "model"
    rc = main(
        [
            "fundus",
            "train",
            "--data",
            "synthetic",
            "--out",
            str(out),
            "--size",
            "64,96",
            "--epochs",
            "2",
            "--backbone-width",
            "8",
            "--synthetic-count",
            "8",
        ]
    )
    assert rc == 0
    return out


def test_train_writes_model_and_curves(trained):
    assert (trained / "model.safetensors").is_file() and (trained / "config.json").is_file()
    assert (trained / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == [
        "checkpoint_epoch0000.pt",
        "checkpoint_epoch0001.pt",
    ]


def test_predict_on_the_real_retina_photograph(trained, tmp_path, capsys):
    photo = retina_jpg()
    assert (
        main(
            ["fundus", "predict", str(photo), "--model", str(trained), "--out", str(tmp_path / "p")]
        )
        == 0
    )
    pred = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert 0 <= pred["dr"]["grade"] <= 4 and len(pred["dr"]["probabilities"]) == 5
    assert (
        abs(sum(pred["dr"]["probabilities"]) - 1) < 1e-3 and len(pred["dme"]["probabilities"]) == 3
    )
    for lesion in ("MA", "HE", "EX", "SE", "OD"):
        with Image.open(tmp_path / "p" / f"{lesion}.png") as im:
            assert im.size == (96, 64) and set(np.unique(np.asarray(im))) <= {0, 255}
    assert 1 <= pred["experts_used"]["seg"] <= 3


def test_evaluate_and_bad_inputs(trained, tmp_path, capsys):
    assert main(["fundus", "evaluate", "--model", str(trained), "--data", "synthetic"]) == 0
    printed = capsys.readouterr().out
    assert "dr_kappa" in printed and "OD_aupr" in printed and "mean experts used" in printed
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"no image")
    assert (
        main(["fundus", "predict", str(bad), "--model", str(trained), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "cannot read image" in capsys.readouterr().err
    assert main(["fundus", "evaluate", "--model", str(tmp_path), "--data", "synthetic"]) == 2
    assert "not a medmoe fundus model" in capsys.readouterr().err
    for flag, value in (("--lr-heads", "0"), ("--expert-loss", "-1")):
        argv = ["fundus", "train", "--data", "synthetic", "--out", str(tmp_path / "t"), flag, value]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--lr-backbone and --lr-heads must be > 0 and --expert-loss >= 0" in err
        assert "Traceback" not in err and not (tmp_path / "t").exists()


def test_demo_fundus_quick(tmp_path):
    assert main(["demo", "fundus", "--quick", "--out", str(tmp_path / "d")]) == 0
    text = (tmp_path / "d" / "report.md").read_text()
    assert "| Multi-task MoE" in text and "| Single-task ResNet-50 classifier" in text
    assert "within 5 points" in text
