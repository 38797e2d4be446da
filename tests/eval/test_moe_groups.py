"""``medmoe evaluate --moe BUNDLE --groups GROUPS.json``: the groups file, the tables from a tiny
bundle on a tiny dataset, and one-line refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medmoe.cli.main import main
from medmoe.data import write_nnunet_dataset
from medmoe.errors import InputError
from medmoe.eval.moe_groups import check_groups, read_groups, task_of_values
from medmoe.eval.moe_stats import as_rows
from medmoe.eval.moe_tables import TableSpec, subject_results


def test_groups_file_is_checked(tmp_path):
    assert check_groups({"liver": [1], "kidney": [3, 4]}) == {"liver": [1], "kidney": [3, 4]}
    for bad, message in [
        ([1, 2], "expected an object"),
        ({}, "expected an object"),
        ({"liver": []}, "non-empty list"),
        ({"liver": [0]}, "label values > 0"),
        ({"liver": ["1"]}, "label values > 0"),
        ({"liver": [True]}, "label values > 0"),
        ({"liver": [1], "spleen": [2, 1]}, "label 1 is in both 'liver' and 'spleen'"),
    ]:
        with pytest.raises(InputError, match=message):
            check_groups(bad)
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(InputError, match="not a JSON file"):
        read_groups(tmp_path / "g.json")
    with pytest.raises(InputError, match="no such groups file"):
        read_groups(tmp_path / "missing.json")


def test_groups_map_values_to_gate_indices():
    groups = {"b": [5], "a": [1, 2]}
    assert task_of_values(groups, ["a", "b"]) == {1: 1, 2: 1, 5: 2}  # the bundle's order
    with pytest.raises(InputError, match="missing b; not in the bundle: c"):
        task_of_values({"a": [1], "c": [2]}, ["a", "b"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One case with two labels (liver: the expert's group; spleen: other) and a bundle with one
    expert (random weights)."""
    import torch

    from medmoe.moe import Gate, GateConfig, MoESam3D, save_moe_bundle
    from medmoe.sam3d import build_mask_decoder, build_sam3d, save_sam3d_checkpoint
    from medmoe.utils.files import file_sha256

    root = tmp_path_factory.mktemp("groups")
    torch.manual_seed(1)
    base = build_sam3d("tiny")
    save_sam3d_checkpoint(base, root / "base.pth")
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    moe = MoESam3D(
        base=base, experts={"liver": build_mask_decoder(base.config)}, gate=gate, tau=0.5
    )
    sha = file_sha256(root / "base.pth")
    save_moe_bundle(
        root / "moe", moe=moe, base_checkpoint=root / "base.pth", base_sha256=sha, expert_dirs={}
    )
    lab = np.zeros((40, 40, 30), np.uint8)
    lab[5:15, 5:15, 5:12] = 1
    lab[22:35, 20:30, 10:20] = 2
    img = (np.random.default_rng(0).normal(20, 3, lab.shape) + 40 * (lab > 0)).astype(np.float32)
    affine = np.diag([1.2, 1.2, 2.0, 1.0])
    write_nnunet_dataset(root / "ds", {"c1": (img, lab, affine)}, {"liver": 1, "spleen": 2})
    (root / "groups.json").write_text(json.dumps({"liver": [1]}))
    return root


def _argv(root, *extra):
    return [
        "evaluate",
        "--dataset",
        str(root / "ds"),
        "--moe",
        str(root / "moe"),
        "--groups",
        str(root / "groups.json"),
        *extra,
    ]


def test_groups_write_markdown_and_json(setup, capsys):
    out = setup / "report.md"
    rc = main(_argv(setup, "--clicks", "2", "--taus", "0.5", "--out", str(out)))
    assert rc == 0
    text = out.read_text()
    for heading in ("## Table 1: Dice / NSD", "## Table 2 (points)", "## Table 2 (box)"):
        assert heading in text
    assert "| 0.5 | s_top |" in text and "| oracle | Aft_weight |" in text
    data = json.loads(out.with_suffix(".json").read_text())  # strict JSON: NaN written as null
    assert data["spec"] == {"groups": ["liver"], "taus": [0.5], "bootstrap": 2000, "seed": 0}
    rows = as_rows(data["rows"])
    # 2 crops; each: 9 methods (Baseline, MoE, FT:1, 3 weightings at one τ, 3 oracles) with
    # points and with the box, and Table 1's 3 models with a random first click
    assert len(rows) == 2 * (9 * 2 + 3)
    assert {(r.name, r.task) for r in rows} == {("liver", 1), ("spleen", 0)}
    assert all(0.0 <= r.dice <= 1.0 for r in rows)
    # the JSON's tables are the library's tables of the JSON's rows
    again = subject_results(rows, "ds", TableSpec(groups=("liver",), taus=(0.5,)))
    table1 = [[[c.dice, c.nsd] for c in row.cells] for row in again.table1]
    assert [[[c["dice"], c["nsd"]] for c in row["cells"]] for row in data["results"]["table1"]] == [
        [[None if math.isnan(v) else v for v in cell] for cell in row] for row in table1
    ]
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompt", "box"], "--prompt does not apply to --groups"),
        (["--clicks", "1,3"], "--clicks is one number"),
        (["--protocol", "cvpr25"], "leave out --protocol"),
    ],
)
def test_groups_refuse_other_protocol_options_in_one_line(setup, capsys, extra, message):
    rc = main(_argv(setup, *extra, "--out", str(setup / "x.md")))
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_groups_need_a_bundle_whose_experts_they_name(setup, capsys):
    argv = ["evaluate", "--dataset", str(setup / "ds"), "--checkpoint", str(setup / "base.pth")]
    rc = main([*argv, "--groups", str(setup / "groups.json"), "--out", str(setup / "x.md")])
    assert rc == 2 and "--groups needs --moe" in capsys.readouterr().err
    (setup / "wrong.json").write_text(json.dumps({"kidney": [2]}))
    argv = _argv(setup, "--out", str(setup / "x.md"))
    argv[argv.index(str(setup / "groups.json"))] = str(setup / "wrong.json")
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "missing liver; not in the bundle: kidney" in err and err.count("\n") == 1


def test_taus_only_with_groups(setup, capsys):
    argv = ["evaluate", "--dataset", str(setup / "ds"), "--checkpoint", str(setup / "base.pth")]
    rc = main([*argv, "--taus", "0.5", "--out", str(setup / "x.csv")])
    assert rc == 2 and "--taus does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--taus", "1.5", "--out", str(setup / "x.csv")])
    assert exc.value.code == 2
