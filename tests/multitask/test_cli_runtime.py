"""``medmoe fundus train`` takes the trainers' runtime options, ``--keep-checkpoints`` and
``--config FILE``, and writes its resolved options beside the model."""

from __future__ import annotations

import json

import pytest
import torch

from medmoe.cli.main import main
from medmoe.train.checkpoint import epoch_checkpoints

SMALL = ["fundus", "train", "--data", "synthetic", "--size", "32,48", "--backbone-width", "4"]
SMALL += ["--head-width", "8", "--synthetic-count", "4", "--augment", "none", "--batch-size", "4"]


def test_fundus_train_reads_a_config_file_and_saves_runtime_and_options(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"epochs": 2, "keep-checkpoints": 1, "precision": "fp32",
                                  "deterministic": True, "workers": 0}))  # fmt: skip
    out = tmp_path / "model"
    assert main([*SMALL, "--config", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    (last,) = epoch_checkpoints(out / "checkpoints")  # keep-checkpoints 1 of 2 epochs
    assert last.name == "checkpoint_epoch0001.pt"
    loop = torch.load(last, map_location="cpu", weights_only=True)["config"]["loop"]
    assert (loop["workers"], loop["precision"], loop["deterministic"]) == (0, "fp32", True)
    options = json.loads((out / "options.json").read_text())
    assert (options["epochs"], options["keep_checkpoints"], options["precision"]) == (2, 1, "fp32")


def test_fundus_train_refuses_an_unknown_config_key_in_one_line(tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"epoch": 2}))
    with pytest.raises(SystemExit) as exc:
        main([*SMALL, "--config", str(recipe), "--out", str(tmp_path / "m")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "epoch" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "m").exists()
