"""``medmoe moe add-task``: the continual job from a dataset folder, in one command.

One run end to end on a tiny random-weights bundle (expert ``liver``) and a synthetic nnU-Net
dataset of 3 scans with ``spleen`` (1) and ``kidney`` (2): the guard is set to accept
(``--min-ratio 0 --accept-without-gain``), so the new version must appear with the experts
``liver`` and ``spleen``; the bundle itself is left unchanged. Bad input exits 2 in one line,
before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.continual import conftest as continual
from tests.continual.conftest import AFFINE, synthetic_scan

from medmoe.cli.main import main
from medmoe.data.datasets import write_nnunet_dataset
from medmoe.errors import InputError

tiny_bundle = continual.tiny_bundle  # the fixture: a tiny bundle with the expert liver


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "Dataset001_Synth"
    cases = {}
    for i in range(3):
        image, label = synthetic_scan(i)
        cases[f"c{i}"] = (image, label, AFFINE)
    return write_nnunet_dataset(root, cases, {"spleen": 1, "kidney": 2})


def _argv(bundle, dataset, versions, *extra) -> list[str]:
    return [
        "moe", "add-task", "--moe", str(bundle), "--dataset", str(dataset),
        "--versions", str(versions), "--device", "cpu", *extra,
    ]  # fmt: skip


def test_add_task_writes_an_accepted_version(tiny_bundle, dataset, tmp_path, capsys):
    from medmoe.moe import load_moe_bundle, read_moe_config

    before = sorted(p.name for p in tiny_bundle.rglob("*"))
    argv = _argv(tiny_bundle, dataset, tmp_path / "versions", "--labels", "spleen")
    argv += ["--name", "spleen", "--epochs", "1", "--min-ratio", "0", "--accept-without-gain"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    stages = [line.split()[1] for line in out.splitlines() if line.startswith("stage:")]
    assert stages == ["load", "crops", "expert", "gate", "guard", "done"]
    assert "| spleen | new | labels |" in out  # the guard's before/after table
    version = tmp_path / "versions" / "v0001"
    assert f"accepted: bundle {version}" in out
    assert load_moe_bundle(version).expert_names == ["liver", "spleen"]
    cont = read_moe_config(version).train_report["continual"]
    assert cont["request"] == {"expert": "spleen", "label": "spleen", "max_epochs": 1}
    assert (tmp_path / "versions" / "current.json").read_text() == '{"version": "v0001"}'
    assert sorted(p.name for p in tiny_bundle.rglob("*")) == before  # the bundle is unchanged


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "liverish", "--name", "x"], "unknown labels ['liverish']"),
        (["--labels", "spleen", "--name", "a/b"], "expert 'a/b' is refused"),
        (["--labels", "spleen", "--name", "s", "--epochs", "0"], "expected an integer >= 1"),
        (["--labels", "spleen", "--name", "s", "--min-ratio", "2"], "min_ratio must be in"),
    ],
)
def test_bad_input_exits_2_in_one_line(
    tiny_bundle,
    dataset,
    tmp_path,
    capsys,
    extra,
    message,
):
    try:
        code = main(_argv(tiny_bundle, dataset, tmp_path / "v", *extra))
    except SystemExit as stop:  # argparse's own refusals (a type's range)
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "v" / "v0001").exists()


def test_not_a_bundle_exits_2(dataset, tmp_path, capsys):
    argv = _argv(tmp_path, dataset, tmp_path / "v", "--labels", "spleen", "--name", "s")
    assert main(argv) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    assert not (tmp_path / "v").exists()


def test_one_merged_label_from_two(tmp_path):
    """``--labels 1 2 --name both``: both values become one structure (the first value) in a
    copy of each label map; the dataset's own files are not written."""
    from medmoe.cli.add_task import _cases
    from medmoe.data import load_label

    image, label = synthetic_scan(0)
    ds = write_nnunet_dataset(
        tmp_path / "ds", {"a": (image, label, AFFINE), "b": (image, label, AFFINE)},
        {"spleen": 1, "kidney": 2, "liver": 3},
    )  # fmt: skip
    with pytest.raises(InputError, match="'liver' is another label"):
        _cases(ds, ["1", "2"], "liver", tmp_path / "job")
    cases, name = _cases(ds, ["1", "kidney"], "both", tmp_path / "job")
    assert name == "both" and len(cases) == 2
    assert cases[0].values == {"both": 1, "liver": 3}
    merged = load_label(cases[0].label).array
    assert np.array_equal(merged, np.where(label > 0, 1, 0))  # spleen and kidney, as value 1
    assert np.array_equal(load_label(ds / "labelsTr" / "a.nii.gz").array, label)
