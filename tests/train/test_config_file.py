"""``--config FILE`` on every SAM-Med3D trainer: a JSON recipe parsed like the command line,
unknown keys and bad values refused in one line (exit 2), and the resolved options written to
the run folder, which reads back as the same recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmoe.cli.common import save_options
from medmoe.cli.main import build_parser, main

EXPERT = ["expert", "train", "--name", "e", "--dataset", "d", "--checkpoint", "c", "--out", "o"]


def _recipe(tmp_path, data) -> str:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_a_recipe_sets_typed_values_and_later_options_win(tmp_path):
    recipe = _recipe(tmp_path, {
        "epochs": 5, "lr-gate": 1e-5, "update_top1_expert": True, "tau": 0.25,
        "expert": ["a", "b"], "weighting": "avg", "--batch-size": 2, "workers": None,
    })  # fmt: skip
    argv = ["moe", "train", "--checkpoint", "c", "--dataset", "d", "--out", "o"]
    args = build_parser().parse_args([*argv, "--config", recipe, "--epochs", "7"])
    assert args.epochs == 7  # after --config: the command line wins
    assert (args.lr_gate, args.update_top1_expert, args.tau) == (1e-5, True, 0.25)
    assert args.expert == [Path("a"), Path("b")] and args.weighting == "avg"
    assert args.batch_size == 2 and args.workers is None
    before = build_parser().parse_args(
        [*argv, "--expert", "x", "--epochs", "7", "--config", recipe]
    )
    assert before.epochs == 5  # before --config: the file wins, as with argparse's @file


def test_a_recipe_may_hold_the_required_options(tmp_path):
    recipe = _recipe(tmp_path, {"out": "run", "epochs": 2})
    args = build_parser().parse_args(["pretrain", "--config", recipe])
    assert (args.out, args.epochs) == (Path("run"), 2)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"epochs": 2, "learning_rate": 1e-3}, "unknown option(s) 'learning_rate'"),
        ({"epochs": 0}, "'epochs': expected an integer >= 1, got '0'"),
        ({"epochs": True}, "'epochs': expected one value"),
        ({"precision": "fp16"}, "'precision': expected one of ['bf16', 'fp32']"),
        ({"resume": "yes"}, "'resume': expected true or false"),
        ({"labels": "liver"}, "'labels': expected a list"),
        (["epochs", 2], "expected a JSON object"),
    ],
)
def test_unknown_keys_and_bad_values_exit_2_in_one_line(tmp_path, capsys, data, said):
    recipe = _recipe(tmp_path, data)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*EXPERT, "--config", recipe])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err


def test_a_file_that_is_not_json_exits_2(tmp_path, capsys):
    (tmp_path / "r.json").write_text("epochs: 5\n")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*EXPERT, "--config", str(tmp_path / "r.json")])
    assert exit_.value.code == 2 and "not a JSON file" in capsys.readouterr().err


def test_the_saved_options_read_back_as_the_same_recipe(tmp_path):
    argv = ["moe", "train", "--checkpoint", "c", "--expert", "a", "b", "--dataset", "d",
            "--out", str(tmp_path), "--tau", "0.3", "--precision", "fp32"]  # fmt: skip
    args = build_parser().parse_args(argv)
    path = save_options(args)
    saved = json.loads(path.read_text())
    assert saved["expert"] == ["a", "b"] and saved["tau"] == 0.3 and saved["precision"] == "fp32"
    assert "func" not in saved and "config" not in saved
    again = build_parser().parse_args(["moe", "train", "--config", str(path)])
    assert {k: v for k, v in vars(again).items() if k != "config"} == {
        k: v for k, v in vars(args).items() if k != "config"
    }


def test_pretrain_writes_its_options_before_it_trains(tmp_path, monkeypatch):
    import medmoe.pretrain.train as pretrain_module

    seen = {}

    def fake_pretrain(cfg, **kwargs):
        seen["file"] = json.loads((tmp_path / "options.json").read_text())
        seen["cfg"] = cfg
        return []

    monkeypatch.setattr(pretrain_module, "pretrain", fake_pretrain)
    recipe = _recipe(tmp_path, {"epochs": 3, "click-iterations": 2})
    assert main(["pretrain", "--config", recipe, "--out", str(tmp_path)]) == 0
    assert seen["file"]["epochs"] == 3 and seen["file"]["click_iterations"] == 2
    assert (seen["cfg"].epochs, seen["cfg"].clicks) == (3, 2)
