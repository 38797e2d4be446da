"""The CVPR 2025 interactive protocol: its click rule, its AUC and its runner, on hand-made cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medmoe.data.volume import Volume
from medmoe.errors import InputError
from medmoe.eval.clicks import largest_error_click, next_click
from medmoe.eval.cvpr25 import gated_nsd, run_cvpr25, summarize_cvpr25, trapezoid_auc
from medmoe.eval.metrics import nsd


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # sum of (v[i] + v[i+1]) / 2 over the 4 unit intervals
        ([0.2, 0.4, 0.6, 0.8, 1.0], 0.3 + 0.5 + 0.7 + 0.9),  # 2.4
        ([1.0] * 5, 4.0),  # the maximum: n - 1, not normalised
        ([0.0] * 5, 0.0),
        ([0.5, 0.5, 0.9, 0.9, 0.9], 0.5 + 0.7 + 0.9 + 0.9),  # 3.0
        ([0.1, 0.7], 0.4),
    ],
)
def test_trapezoid_auc_by_hand(values, expected):
    assert trapezoid_auc(values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("values", [[0.5], [], [[0.1, 0.2]]])
def test_trapezoid_auc_needs_a_row_of_two(values):
    with pytest.raises(InputError, match="at least 2 values"):
        trapezoid_auc(values)


def test_nsd_is_zero_at_or_below_dice_0_2():
    gt = np.zeros((12, 12, 12), bool)
    gt[2:10, 2:10, 2:10] = True
    assert gated_nsd(gt, gt, spacing=(1, 1, 1), dice_value=0.2) == 0.0
    assert gated_nsd(gt, gt, spacing=(1, 1, 1), dice_value=0.21) == 1.0


# --- the click rule ------------------------------------------------------------------------


def test_click_at_the_centre_of_the_larger_of_two_error_components():
    gt = np.zeros((20, 20, 20), bool)
    gt[2:9, 2:9, 2:9] = True  # 7^3 cube missed entirely: FN component of 343 voxels
    pred = np.zeros_like(gt)
    pred[12:15, 12:15, 12:15] = True  # 3^3 = 27-voxel FP component
    click = largest_error_click(pred, gt)
    # the centre of the cube spanning 2..8 is voxel 5, 4 voxels from the nearest background
    assert click.point.tolist() == [5, 5, 5] and click.label == 1


def test_a_larger_false_positive_gives_a_background_click():
    gt = np.zeros((20, 20, 20), bool)
    gt[2:5, 2:5, 2:5] = True  # 27 voxels, all missed
    pred = np.zeros_like(gt)
    pred[10:17, 10:17, 10:17] = True  # 343-voxel FP component, centre 13
    click = largest_error_click(pred, gt)
    assert click.point.tolist() == [13, 13, 13] and click.label == 0


def test_touching_fn_and_fp_are_one_component():
    """The error is one region: a missed bar (100 voxels) touching a false-positive slab (25)
    makes a 125-voxel component that beats a separate 108-voxel FP block. Under the separate
    FN-vs-FP rule (``next_click(method="center")``) the FP block would win instead."""
    gt = np.zeros((20, 12, 12), bool)
    pred = np.zeros_like(gt)
    gt[1:5, 2:7, 2:7] = True  # FN: x 1..4
    pred[5:6, 2:7, 2:7] = True  # FP touching it: x 5
    pred[10:19, 2:6, 2:5] = True  # FP elsewhere: 9 x 4 x 3 = 108
    click = largest_error_click(pred, gt)
    # merged component x 1..5, y 2..6, z 2..6: the distance to background is min over axes of
    # (x, 6 - x), (y - 1, 7 - y), (z - 1, 7 - z), whose maximum 3 is reached only at (3, 4, 4)
    assert click.point.tolist() == [3, 4, 4] and click.label == 1
    assert next_click(pred, gt, method="center").label == 0


def test_components_are_26_connected():
    gt = np.zeros((16, 16, 16), bool)
    gt[1:4, 1:4, 1:4] = True  # two missed 3^3 cubes that touch only at a corner: 54 voxels
    gt[4:7, 4:7, 4:7] = True
    pred = np.zeros_like(gt)
    pred[10:14, 10:14, 10:13] = True  # 48-voxel FP: larger than either cube alone
    click = largest_error_click(pred, gt)
    # both cube centres are 2 from the background; (2, 2, 2) comes first in C order
    assert click.point.tolist() == [2, 2, 2] and click.label == 1


def test_no_click_when_the_prediction_is_perfect_and_first_click_from_empty():
    gt = np.zeros((9, 9, 9), bool)
    gt[2:7, 2:7, 2:7] = True
    assert largest_error_click(gt, gt) is None
    first = largest_error_click(np.zeros_like(gt), gt)
    assert first.point.tolist() == [4, 4, 4] and first.label == 1
    with pytest.raises(InputError, match="equal shape"):
        largest_error_click(gt[:-1], gt)


# --- the runner, with a predictor that answers from a script -----------------------------


class ScriptedPredictor:
    """Returns the given crop masks in turn and records the prompts it was given."""

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks, self.calls, self.images = list(masks), [], 0

    def set_image(self, image) -> None:
        self.images += 1

    def predict(self, points=None, labels=None, box=None, mask_input=None):
        self.calls.append(SimpleNamespace(points=points, labels=labels, box=box, low=mask_input))
        mask = torch.from_numpy(self.masks[len(self.calls) - 1])[None, None]
        return SimpleNamespace(mask=mask, low_res_logits=torch.full((1, 1, 32, 32, 32), 1.0))


def _toy():
    """A 128^3 scan at 1.5 mm whose crop is the scan itself (centred at voxel 64), and a 9^3
    cube (voxels 60..68, 729 voxels) as the object."""
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    image = Volume(np.random.default_rng(0).normal(1, 0.1, (128,) * 3).astype(np.float32), affine)
    gt = np.zeros((128,) * 3, bool)
    gt[60:69, 60:69, 60:69] = True
    slab = np.zeros_like(gt)
    slab[60, 60:68, 60:69] = True  # 72 voxels inside the cube
    shifted = np.roll(gt, 1, axis=0)  # 648 voxels overlap
    return image, gt, [np.zeros_like(gt), slab, shifted, gt]


def test_runner_scores_and_aucs_by_hand():
    image, gt, masks = _toy()
    assert nsd(masks[2], gt, spacing=image.spacing) == 1.0  # a 1.5 mm shift is within 2 mm
    pred = ScriptedPredictor(masks)
    run = run_cvpr25(pred, image, gt, prompt="points")
    # Dice: empty 0; slab 2*72/(72+729) = 144/801; shift 2*648/1458 = 8/9; then perfect twice
    # (the 5th step has no error to click on, so the 4th answer stands)
    expected_dsc = [0.0, 144 / 801, 8 / 9, 1.0, 1.0]
    assert run.dsc == pytest.approx(expected_dsc, abs=1e-6)
    assert run.nsd == pytest.approx([0.0, 0.0, 1.0, 1.0, 1.0])  # the slab's Dice 0.18 <= 0.2
    # DSC_AUC = 0/2 + 144/801 + 8/9 + 1 + 1/2; NSD_AUC = 0 + 0 + 1 + 1 + 1/2
    assert run.dsc_auc == pytest.approx(144 / 801 + 8 / 9 + 1.5, abs=1e-6)
    assert run.nsd_auc == pytest.approx(2.5)
    assert run.box_dsc is None and run.clicks_outside == 0 and run.seconds >= 0
    assert len(pred.calls) == 4 and pred.images == 1
    # clicks accumulate; the first two are the cube's centre (from an empty answer, twice), the
    # 4th is the first voxel of the missed x = 60 face (the FN and FP faces tie at 81 voxels,
    # the first component in C order wins, and every voxel of a one-voxel slab lies 1 deep)
    assert [c.labels.tolist() for c in pred.calls] == [[1], [1, 1], [1, 1, 1], [1, 1, 1, 1]]
    assert pred.calls[1].points.tolist() == [[64, 64, 64]] * 2
    assert pred.calls[3].points[-1].tolist() == [60, 60, 60]
    assert pred.calls[0].low is None and all(c.low is not None for c in pred.calls[1:])
    assert all(c.box is None for c in pred.calls)


def test_runner_with_a_box_scores_it_apart_from_the_auc():
    image, gt, masks = _toy()
    pred = ScriptedPredictor([gt.copy(), *masks])
    run = run_cvpr25(pred, image, gt, prompt="box")
    assert run.box_dsc == 1.0 and run.box_nsd == 1.0
    # a perfect box answer leaves nothing to click on: all 5 click steps keep it
    assert run.dsc == (1.0,) * 5 and run.dsc_auc == 4.0 and len(pred.calls) == 1
    assert pred.calls[0].box.tolist() == [60, 60, 60, 68, 68, 68] and pred.calls[0].points is None


def test_runner_refuses_bad_targets():
    image, gt, masks = _toy()
    with pytest.raises(InputError, match="empty"):
        run_cvpr25(ScriptedPredictor(masks), image, np.zeros_like(gt))
    with pytest.raises(InputError, match="unknown prompt"):
        run_cvpr25(ScriptedPredictor(masks), image, gt, prompt="scribble")


def test_summary_per_name_and_per_case():
    base = {"status": "ok", "nsd_auc": 0.0, "nsd_final": 0.0}
    rows = [
        {**base, "case": "a", "name": "x", "dsc_auc": 1.0, "dsc_final": 0.5, "time_s": 1.0},
        {**base, "case": "a", "name": "y", "dsc_auc": 3.0, "dsc_final": 0.9, "time_s": 2.0},
        {**base, "case": "b", "name": "x", "dsc_auc": 2.0, "dsc_final": 0.7, "time_s": 4.0},
        {"case": "b", "name": "y", "status": "absent"},
    ]
    for r in rows[:2]:
        r["case_time_s"] = 3.0
    rows[2]["case_time_s"] = 4.0
    by_name = {s["name"]: s for s in summarize_cvpr25(rows)}
    assert by_name["x"]["n"] == 2 and by_name["x"]["dsc_auc"] == 1.5
    assert by_name["y"]["n"] == 1 and by_name["y"]["dsc_auc"] == 3.0
    # per case: a = mean(1, 3) = 2, b = 2 -> 2; time: the mean case total (3 + 4) / 2
    assert by_name["all (per case)"]["dsc_auc"] == 2.0
    assert by_name["all (per case)"]["time_s"] == 3.5
