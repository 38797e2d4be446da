from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medmoe.cli.main import main


def retina_jpg() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        pytest.skip(
            "scikit-image (it bundles retina.jpg) is not installed: pip install 'medmoe[dev]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "retina.jpg"


TRAIN = ["fundus", "train", "--data", "synthetic", "--size", "64,96", "--epochs", "2"]
TRAIN += ["--backbone-width", "8", "--synthetic-count", "8", "--seed", "1"]  # augmentation on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fundus") / "model"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


def test_train_writes_model_and_curves(trained):
    assert (trained / "model.safetensors").is_file() and (trained / "config.json").is_file()
    assert (trained / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (trained / "checkpoints").glob("*.pt")) == [
        "checkpoint_epoch0000.pt",
        "checkpoint_epoch0001.pt",
    ]


def test_predict_on_the_real_retina_photograph(trained, tmp_path, capsys):
    photo = retina_jpg()
    assert (
        main(
            [
                "fundus",
                "predict",
                "--image",
                str(photo),
                "--model",
                str(trained),
                "--out",
                str(tmp_path / "p"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pred = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert 0 <= pred["dr"]["grade"] <= 4 and len(pred["dr"]["probabilities"]) == 5
    assert (
        abs(sum(pred["dr"]["probabilities"]) - 1) < 1e-3 and len(pred["dme"]["probabilities"]) == 3
    )
    # the masks come back at the photograph's own 1411 x 1411, not the model's 64 x 96 (#27 item
    # 5: the photograph was stretched to 64 x 96 and its masks left there); the model saw the
    # field of view (rows 6-1400, columns 8-1400) padded to 3:2, the disc kept round
    for lesion in ("MA", "HE", "EX", "SE", "OD"):
        with Image.open(tmp_path / "p" / f"{lesion}.png") as im:
            assert im.size == (1411, 1411) and set(np.unique(np.asarray(im))) <= {0, 255}
    with Image.open(tmp_path / "p" / "overlay.png") as im:
        assert im.size == (1411, 1411)
    assert pred["field_of_view"] == {"box": [6, 1401, 8, 1401], "window": [6, -342, 1395, 2092]}
    assert 1 <= pred["experts_used"]["seg"] <= 3


def test_evaluate_and_bad_inputs(trained, tmp_path, capsys):
    argv = ["fundus", "evaluate", "--model", str(trained), "--data", "synthetic"]
    assert (
        main([*argv, "--seed", "1", "--synthetic-count", "4", "--out", str(tmp_path / "m.json")])
        == 0
    )
    printed = capsys.readouterr().out
    # validation unless the test split is asked for: nothing is tuned on test by default
    assert "split: val" in printed and "dr_kappa" in printed and "MA_aupr" in printed
    assert "mean experts used" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["split"] == "val" and 0 <= metrics["OD_dice"] <= 1
    test_run = [*argv, "--seed", "1", "--synthetic-count", "4", "--split", "test"]
    assert main(test_run) == 0 and "split: test" in capsys.readouterr().out
    saved = json.loads((trained / "config.json").read_text())
    assert saved["mean"] == [0.485, 0.456, 0.406] and saved["std"] == [0.229, 0.224, 0.225]
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"no image")
    pred = ["fundus", "predict", "--image", str(bad), "--model", str(trained)]
    assert main([*pred, "--out", str(tmp_path / "o")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["fundus", "evaluate", "--model", str(tmp_path), "--data", "synthetic"]) == 2
    assert "not a medmoe fundus model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr-heads", "0", "expected a number > 0"),
        ("--expert-loss", "-1", "expected a number >= 0"),
        ("--epochs", "0", "expected an integer >= 1"),
        ("--batch-size", "0", "expected an integer >= 1"),
        ("--top-p", "0", "expected a number in (0, 1]"),
        ("--seed", "-1", "expected an integer >= 0"),
        ("--augment", "heavy", "invalid choice"),
        ("--device", "tpu", "must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_train_options_are_range_checked(flag, value, message, tmp_path, capsys):
    argv = ["fundus", "train", "--data", "synthetic", "--out", str(tmp_path / "t"), flag, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()


def test_kill_and_resume_is_bit_identical(trained, tmp_path, capsys):
    """Augmentation on: a run killed after its first epoch (only that checkpoint written) and
    resumed ends with exactly the weights of the uninterrupted run (the fixture's)."""
    from safetensors.torch import load_file

    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    first = trained / "checkpoints" / "checkpoint_epoch0000.pt"
    (tmp_path / "b" / "checkpoints" / first.name).write_bytes(first.read_bytes())
    assert main([*TRAIN, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = load_file(str(trained / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main([*TRAIN, "--lr-heads", "1e-3", "--out", str(tmp_path / "b"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and len(err.strip().splitlines()) == 1


def test_demo_fundus_quick(tmp_path):
    assert main(["demo", "fundus", "--quick", "--out", str(tmp_path / "d")]) == 0
    text = (tmp_path / "d" / "report.md").read_text()
    assert "| Multi-task MoE" in text and "| Single-task ResNet-50 classifier" in text
    assert "## Test split" in text and "## Validation split" in text and "within 5 points" in text
    assert "| Model | RG acc | MER acc | MA IoU / Dice |" in text and "MA AUPR" in text
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    seg = results["Single-task DeepLabV3+ segmenter"]
    assert set(seg) == {"val", "test", "seconds", "training_usage"}
    assert set(seg["test"]["thresholds"]) == {"MA", "HE", "EX", "SE", "OD"}
    assert seg["test"]["thresholds"] == seg["val"]["best_thresholds"]  # chosen on val, never test
    assert "## Lesions on test, thresholds chosen on validation" in text
    assert "joint DR + DME accuracy" in text and "| dr true \\ predicted |" in text
    assert "## Expert usage" in text and "Multi-task MoE (3 experts/task, top-p), seg: test" in text
    assert "whole model:" in text and "heads alone: top-p / dense" in text
    assert "![lesions_model0](lesions_model0.png)" in text
    assert (tmp_path / "d" / "lesions_model0.png").is_file()


def test_routing_options_reach_the_saved_configs(tmp_path, monkeypatch):
    """--aux-l1/--aux-entropy/--aux-balance and --no-renormalize go into the configs saved
    with the model; their defaults are the library's."""
    from dataclasses import asdict

    import medmoe.multitask.training.train as train_module
    from medmoe.multitask.model.moe import MultiTaskConfig
    from medmoe.multitask.training.losses import AuxWeights

    seen = {}

    def capture(*, model_config, config, **kw):
        seen["model"], seen["train"] = model_config, config
        raise KeyboardInterrupt  # stop before any training: the configs are what is checked

    monkeypatch.setattr(train_module, "train_fundus", capture)
    base = ["fundus", "train", "--data", "synthetic", "--out", str(tmp_path / "m")]
    base += ["--synthetic-count", "2", "--size", "32,48"]
    assert main(base) == 130
    assert seen["train"].aux == asdict(AuxWeights()) and seen["model"].renormalize
    assert seen["model"].renormalize is MultiTaskConfig().renormalize
    flags = ["--aux-l1", "0.1", "--aux-entropy", "0", "--aux-balance", "0.05", "--no-renormalize"]
    assert main([*base, *flags]) == 130
    assert seen["train"].aux == asdict(AuxWeights(l1=0.1, entropy=0.0, balance=0.05))
    assert seen["model"].renormalize is False
