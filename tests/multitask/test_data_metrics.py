from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from medmoe.errors import InputError
from medmoe.multitask.data.idrid import (
    DME_COLUMN,
    grading_samples,
    load_masks,
    segmentation_samples,
)
from medmoe.multitask.data.synthetic import synth_fundus
from medmoe.multitask.evaluation.metrics import (
    accuracy,
    aupr,
    pooled_iou_dice,
    quadratic_weighted_kappa,
)


def fake_idrid(root):
    seg_img = root / "A. Segmentation" / "1. Original Images" / "a. Training Set"
    gt = root / "A. Segmentation" / "2. All Segmentation Groundtruths" / "a. Training Set"
    seg_img.mkdir(parents=True)
    for n in ("IDRiD_80", "IDRiD_81"):
        Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(seg_img / f"{n}.jpg")
    dirs = {
        "MA": "1. Microaneurysms",
        "HE": "2. Haemorrhages",
        "EX": "3. Hard Exudates",
        "SE": "4. Soft Exudates",
        "OD": "5. Optic Disc",
    }
    for d in dirs.values():
        (gt / d).mkdir(parents=True)
    red = np.zeros((20, 30, 3), np.uint8)
    red[2:5, 3:7, 0] = 255  # 12 positive pixels in the red channel
    Image.fromarray(red).save(gt / dirs["MA"] / "IDRiD_80_MA.tif")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: the alpha channel must not become the label
    rgba[10:12, 10:15, 0] = 255  # 10 positive pixels
    Image.fromarray(rgba, mode="RGBA").save(gt / dirs["EX"] / "IDRiD_81_EX.tif")
    od = np.zeros((20, 30, 3), np.uint8)
    od[0:4, 0:4] = 255
    Image.fromarray(od).save(gt / dirs["OD"] / "IDRiD_81_OD.tif")
    grade_dir = root / "B. Disease Grading" / "2. Groundtruths"
    grade_dir.mkdir(parents=True)
    (grade_dir / "a. IDRiD_Disease Grading_Training Labels.csv").write_text(
        f"Image name,Retinopathy grade,{DME_COLUMN},,\nIDRiD_001,3,2,,\nIDRiD_002,0,0,,\n,,,,\n"
    )


def test_idrid_loader(tmp_path):
    fake_idrid(tmp_path)
    seg = segmentation_samples(tmp_path)
    assert [s.image.name for s in seg] == ["IDRiD_80.jpg", "IDRiD_81.jpg"]
    assert seg[0].masks["HE"] is None and seg[0].masks["MA"] is not None
    m80 = load_masks(seg[0], (20, 30))
    assert (
        m80.shape == (5, 20, 30) and m80[0].sum() == 12 and m80[1:].sum() == 0
    )  # missing = negative
    m81 = load_masks(seg[1], (20, 30))
    assert m81[2].sum() == 10  # RGBA: colour channels only, not the opaque alpha (600 pixels)
    assert m81[4].sum() == 16
    grades = grading_samples(tmp_path)
    assert [(g.image.name, g.dr, g.dme) for g in grades] == [
        ("IDRiD_001.jpg", 3, 2),
        ("IDRiD_002.jpg", 0, 0),
    ]
    with pytest.raises(InputError, match="not an IDRiD folder"):
        segmentation_samples(tmp_path / "nothing")


def test_metrics_hand_computed():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    # kappa: perfect -> 1; the classic 2-class example
    assert quadratic_weighted_kappa([0, 1, 2], [0, 1, 2], 3) == 1.0
    # O = [[1,1],[0,2]] (true rows), W = [[0,1],[1,0]]; E = outer([2,2],[1,3])/4 = [[.5,1.5],[.5,1.5]]
    # kappa = 1 - (1) / (1.5 + 0.5) = 0.5
    assert math.isclose(quadratic_weighted_kappa([0, 1, 1, 1], [0, 0, 1, 1], 2), 0.5)
    pred = np.array([[1, 1, 0, 0]], bool)
    true = np.array([[1, 0, 1, 0]], bool)
    iou, dice = pooled_iou_dice(pred, true)  # tp 1, fp 1, fn 1
    assert math.isclose(iou, 1 / 3) and math.isclose(dice, 0.5)
    # scores 0.9(+), 0.8(-), 0.7(+), 0.1(-): precision at recall 0.5 is 1, at recall 1 is 2/3
    assert math.isclose(aupr([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]), 0.5 * 1 + 0.5 * (2 / 3))


def test_synthetic_grades_follow_lesions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, masks, dr, dme = synth_fundus(rng, (64, 96))
        assert img.shape == (3, 64, 96) and masks.shape == (5, 64, 96) and masks[4].any()
        lesions = masks[:4].any(axis=(1, 2))
        assert (dr == 0) == (not lesions.any())
        assert (dme == 0) == (not masks[2].any())


def test_a_byte_order_mark_in_the_grading_csv_is_read(tmp_path):
    """Saved by a spreadsheet with a BOM, the first column was "\\ufeffImage name": every row
    was skipped and training went on with segmentation only, without a word."""
    fake_idrid(tmp_path)
    csv_path = (
        tmp_path
        / "B. Disease Grading"
        / "2. Groundtruths"
        / ("a. IDRiD_Disease Grading_Training Labels.csv")
    )
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    assert [(g.dr, g.dme) for g in grading_samples(tmp_path)] == [(3, 2), (0, 0)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("Image name,Retinopathy grade\nIDRiD_001,3\n", "no 'Risk of macular edema ' column"),
        (f"Image,Retinopathy grade,{DME_COLUMN}\nIDRiD_001,3,2\n", "no 'Image name' column"),
        (f"Image name,Retinopathy grade,{DME_COLUMN}\n", "no graded images"),
        (f"Image name,Retinopathy grade,{DME_COLUMN}\nIDRiD_001,three,2\n", "integer"),
    ],
)
def test_a_grading_csv_without_what_it_needs_is_refused(tmp_path, text, message):
    fake_idrid(tmp_path)
    csv_path = (
        tmp_path
        / "B. Disease Grading"
        / "2. Groundtruths"
        / ("a. IDRiD_Disease Grading_Training Labels.csv")
    )
    csv_path.write_text(text)
    with pytest.raises(InputError, match=message):
        grading_samples(tmp_path)


def test_missing_ground_truth_is_refused_and_missing_masks_are_said(tmp_path, caplog):
    import shutil

    fake_idrid(tmp_path)
    with caplog.at_level("WARNING", logger="medmoe.multitask.data.idrid"):
        segmentation_samples(tmp_path)
    said = caplog.text
    assert "SE masks missing for 2 images: treated as empty" in said
    assert "MA masks missing for 1 images" in said and "OD masks missing for 1 images" in said
    shutil.rmtree(tmp_path / "A. Segmentation" / "2. All Segmentation Groundtruths")
    with pytest.raises(InputError, match="segmentation ground truth is missing"):
        segmentation_samples(tmp_path)


def test_the_cli_refuses_a_tree_without_ground_truth_in_one_line(tmp_path, capsys):
    import shutil

    from medmoe.cli.main import main

    fake_idrid(tmp_path / "idrid")
    shutil.rmtree(tmp_path / "idrid" / "A. Segmentation" / "2. All Segmentation Groundtruths")
    argv = ["fundus", "train", "--data", str(tmp_path / "idrid"), "--out", str(tmp_path / "m")]
    assert main(argv + ["--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "segmentation ground truth is missing" in err and len(err.splitlines()) == 1
