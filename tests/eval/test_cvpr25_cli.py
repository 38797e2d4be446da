"""``medmoe evaluate --protocol cvpr25`` on a tiny synthetic dataset, with a checkpoint and a bundle."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medmoe.cli.main import main
from medmoe.data import write_nnunet_dataset
from medmoe.eval import trapezoid_auc
from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two cases with two labels each, a tiny random SAM-Med3D checkpoint, and a bundle of it
    with one expert (tau 0, so the expert answers and its name comes back)."""
    import torch

    from medmoe.moe import Gate, GateConfig, MoESam3D, save_moe_bundle
    from medmoe.sam3d import build_mask_decoder
    from medmoe.utils.files import file_sha256

    root = tmp_path_factory.mktemp("cvpr25")
    torch.manual_seed(0)
    base = build_sam3d("tiny")
    save_sam3d_checkpoint(base, root / "tiny.pth")
    gate = Gate(config=GateConfig(embed_dim=96, num_experts=1))
    moe = MoESam3D(base=base, experts={"liver": build_mask_decoder(base.config)}, gate=gate, tau=0)
    sha = file_sha256(root / "tiny.pth")
    save_moe_bundle(
        root / "moe", moe=moe, base_checkpoint=root / "tiny.pth", base_sha256=sha, expert_dirs={}
    )
    rng = np.random.default_rng(0)
    cases = {}
    for c in ("c1", "c2"):
        lab = np.zeros((40, 40, 30), np.uint8)
        lab[5:15, 5:15, 5:12] = 1
        lab[22:35, 20:30, 10:20] = 2
        img = (rng.normal(20, 3, lab.shape) + 40 * (lab > 0)).astype(np.float32)
        cases[c] = (img, lab, np.diag([1.2, 1.2, 2.0, 1.0]))
    write_nnunet_dataset(root / "ds", cases, {"liver": 1, "spleen": 2})
    return root


def _evaluate(root, *extra, out="r.csv"):
    argv = ["evaluate", "--dataset", str(root / "ds"), "--protocol", "cvpr25", *extra]
    return main([*argv, "--out", str(root / out)])


@pytest.mark.parametrize("prompt", ["points", "box"])
def test_cvpr25_writes_rows_and_table(setup, capsys, prompt):
    rc = _evaluate(setup, "--checkpoint", str(setup / "tiny.pth"), "--prompt", prompt)
    assert rc == 0
    rows = list(csv.DictReader((setup / "r.csv").open()))
    assert [(r["case"], r["name"], r["status"]) for r in rows] == [
        ("c1", "liver", "ok"),
        ("c1", "spleen", "ok"),
        ("c2", "liver", "ok"),
        ("c2", "spleen", "ok"),
    ]
    for r in rows:
        dsc = [float(r[f"dsc@{i}"]) for i in range(1, 6)]
        nsd = [float(r[f"nsd@{i}"]) for i in range(1, 6)]
        assert all(0.0 <= v <= 1.0 for v in dsc + nsd)
        assert float(r["dsc_auc"]) == pytest.approx(trapezoid_auc(dsc))
        assert float(r["nsd_auc"]) == pytest.approx(trapezoid_auc(nsd))
        assert float(r["dsc_final"]) == dsc[-1] and float(r["nsd_final"]) == nsd[-1]
        # every click given is a foreground or a background one; without a box the first
        # click is on the object
        given = int(r["clicks_fg"]) + int(r["clicks_bg"])
        assert given + int(r["clicks_outside"]) <= 5
        assert prompt == "box" or int(r["clicks_fg"]) >= 1
        assert ("dsc_box" in r) == (prompt == "box")
        assert float(r["case_budget_s"]) == 180.0  # 90 s for each of the case's 2 classes
        assert r["over_budget"] in ("True", "False")
    c1 = [float(r["time_s"]) for r in rows if r["case"] == "c1"]
    assert float(rows[0]["case_time_s"]) == pytest.approx(sum(c1))
    printed = capsys.readouterr().out
    assert "DSC_AUC" in printed and "NSD_AUC" in printed and "all (per case)" in printed
    assert "of 2 cases" in printed


def test_cvpr25_with_a_bundle_reports_the_expert(setup):
    assert _evaluate(setup, "--moe", str(setup / "moe"), "--labels", "liver", out="m.csv") == 0
    rows = list(csv.DictReader((setup / "m.csv").open()))
    assert [r["name"] for r in rows] == ["liver", "liver"]
    assert all(r["expert_name"] == "liver" and 0 <= float(r["s_top"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--clicks", "1,3"], "--clicks does not apply to --protocol cvpr25"),
        (["--click-method", "center"], "--click-method does not apply"),
    ],
)
def test_cvpr25_refuses_click_options_in_one_line(setup, capsys, extra, message):
    rc = _evaluate(setup, "--checkpoint", str(setup / "tiny.pth"), *extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_unknown_protocol_exits_2_in_one_line(setup, capsys):
    with pytest.raises(SystemExit) as exc:
        _evaluate(setup, "--checkpoint", "x", "--protocol", "cvpr24")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'cvpr24'" in err and err.count("\n") == 1
