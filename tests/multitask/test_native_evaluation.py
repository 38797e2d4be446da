"""IDRiD-comparable evaluation (issue #27, item 3): lesions scored at the photograph's native
resolution against the original masks, thresholds carried from validation, per-image Dice,
joint DR + DME accuracy and confusion matrices; each against a literal reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.metrics import compute_dice
from PIL import Image

from medmoe.multitask.data.datasets import FundusData, GradingSet, SegmentationSet
from medmoe.multitask.data.idrid import binarize_mask, segmentation_samples
from medmoe.multitask.evaluation import lesion_scores as ls
from medmoe.multitask.evaluation.evaluate import evaluate_split, lesion_outputs
from medmoe.multitask.evaluation.metrics import (
    aupr,
    confusion_matrix,
    joint_accuracy,
    pooled_iou_dice,
)
from medmoe.multitask.model.moe import MultiTaskConfig, MultiTaskMoE

LESION_DIRS = ("1. Microaneurysms", "2. Haemorrhages", "3. Hard Exudates", "4. Soft Exudates")


def _hist(scores, true):
    s = torch.as_tensor(np.asarray(scores, np.float32))[None]
    pos, neg = ls.histogram(s, torch.as_tensor(np.asarray(true, bool))[None])
    return pos[0].numpy(), neg[0].numpy()


def test_counts_give_the_exact_scores_on_bin_aligned_scores():
    rng = np.random.default_rng(0)
    # scores at bin centres: the binned AUPR is the exact one
    scores = (rng.integers(0, ls.BINS, 5000) + 0.5) / ls.BINS
    true = rng.random(5000) < 0.3 * scores + 0.05
    pos, neg = _hist(scores, true)
    assert ls.average_precision(pos, neg) == pytest.approx(aupr(scores, true), abs=1e-9)
    for t in (0.1, 0.5, 0.77):
        assert ls.iou_dice_at(pos, neg, t) == pytest.approx(pooled_iou_dice(scores >= t, true))
    cont = rng.random(5000)  # continuous scores: within a bin's worth
    pos, neg = _hist(cont, true)
    assert ls.average_precision(pos, neg) == pytest.approx(aupr(cont, true), abs=1e-3)
    assert math.isnan(ls.average_precision(*_hist(cont, np.zeros(5000, bool))))


def test_best_threshold_by_hand():
    # positives 0.9, 0.6; negatives 0.7, 0.2. Dice: t <= 0.2: 4/6; 0.2 < t <= 0.6: 4/5 (best);
    # 0.6 < t <= 0.7: 2/4; 0.7 < t <= 0.9: 2/3. The lowest best threshold is just above 0.2,
    # the bin edge after 0.2's bin (2000): 2001 / 10000.
    pos, neg = _hist([0.9, 0.6, 0.7, 0.2], [1, 1, 0, 0])
    assert ls.best_threshold(pos, neg) == pytest.approx(0.2001)
    assert ls.dice_curve(pos, neg)[[0, 2001, 6001, 7001]] == pytest.approx([4 / 6, 0.8, 0.5, 2 / 3])


def test_image_dice_is_monais():
    rng = np.random.default_rng(1)
    probs = rng.random((3, 12, 16)).astype(np.float32)
    true = rng.random((3, 12, 16)) < 0.2
    true[2] = False  # no such lesion: nan, as MONAI's ignore_empty
    pos, neg = ls.histogram(torch.from_numpy(probs), torch.from_numpy(true))
    ref = compute_dice(
        torch.from_numpy(probs >= 0.4)[None].float(), torch.from_numpy(true)[None].float()
    )[0]
    ours = [ls.image_dice(pos[c].numpy(), neg[c].numpy(), 0.4) for c in range(3)]
    assert ours[:2] == pytest.approx(ref[:2].tolist(), abs=1e-6)
    assert math.isnan(ours[2]) and math.isnan(float(ref[2]))


def test_grade_metrics_by_hand():
    assert confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3).tolist() == [
        [1, 0, 0],
        [0, 1, 0],
        [0, 1, 1],
    ]
    # right DR on 0, 1, 3; right DME on 0, 2, 3: both right on 0 and 3
    assert joint_accuracy([0, 1, 2, 3], [0, 1, 0, 3], [1, 0, 1, 1], [1, 1, 1, 1]) == 0.5


def idrid_tree(root, size=(40, 60)):
    """Two photographs at ``size`` (their native resolution) with MA and OD masks of that size."""
    img_dir = root / "A. Segmentation" / "1. Original Images" / "b. Testing Set"
    gt = root / "A. Segmentation" / "2. All Segmentation Groundtruths" / "b. Testing Set"
    img_dir.mkdir(parents=True)
    for d in (*LESION_DIRS, "5. Optic Disc"):
        (gt / d).mkdir(parents=True)
    rng = np.random.default_rng(2)
    for n in ("IDRiD_55", "IDRiD_56"):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(img_dir / f"{n}.jpg")
        ma = np.zeros(size, np.uint8)
        ma[7, 11] = ma[30, 41] = 255  # two one-pixel microaneurysms
        Image.fromarray(ma).save(gt / LESION_DIRS[0] / f"{n}_MA.tif")
        od = np.zeros(size, np.uint8)
        od[5:20, 30:50] = 255
        Image.fromarray(od).save(gt / "5. Optic Disc" / f"{n}_OD.tif")


def test_lesions_are_scored_against_the_original_masks_at_native_size(tmp_path):
    idrid_tree(tmp_path)
    samples = segmentation_samples(tmp_path, "test")
    model_size = (16, 24)  # the model sees the photographs shrunk 2.5x
    data = FundusData(
        GradingSet(images=[], dr=[], dme=[], size=model_size),
        SegmentationSet(images=samples, masks=None, size=model_size),
    )
    torch.manual_seed(0)
    cfg = MultiTaskConfig(
        tasks=("seg",), num_experts=1, backbone_width=4, head_width=8, image_size=model_size
    )
    model = MultiTaskMoE(config=cfg).eval()
    ev = evaluate_split(model, data, batch_size=2, thresholds={"OD": 0.3})
    # the reference: each probability map upsampled to 40 x 60 by hand, the original mask files
    images = torch.stack([data.segmentation[i]["image"] for i in range(2)])
    with torch.no_grad():
        prob, _ = lesion_outputs(model, images, dense=False)
    up = F.interpolate(prob, size=(40, 60), mode="bilinear", align_corners=False).numpy()
    up = (np.floor(up * ls.BINS) + 0.5) / ls.BINS  # quantised to the bins: the scores are exact
    ma = np.stack([binarize_mask(s.masks["MA"], (40, 60)) for s in samples])
    od = np.stack([binarize_mask(s.masks["OD"], (40, 60)) for s in samples])
    assert ma.sum() == 4  # four pixels, not the max-pooled targets' 4 x (2.5^2 rounded up)
    assert ev.metrics["MA_aupr"] == pytest.approx(aupr(up[:, 0], ma), abs=1e-9)
    assert ev.metrics["OD_aupr"] == pytest.approx(aupr(up[:, 4], od), abs=1e-9)
    ref_iou, ref_dice = pooled_iou_dice(up[:, 4] >= 0.5, od)
    assert (ev.metrics["OD_iou"], ev.metrics["OD_dice"]) == pytest.approx((ref_iou, ref_dice))
    assert ev.metrics["OD_dice_tuned"] == pytest.approx(pooled_iou_dice(up[:, 4] >= 0.3, od)[1])
    assert ev.thresholds["OD"] == 0.3 and ev.thresholds["MA"] == 0.5
    assert len(ev.per_image_dice["OD"]) == 2 and math.isnan(ev.per_image_dice["HE"][0])
    assert 0 < ev.best_thresholds["OD"] < 1
    assert ev.experts_used == {"seg": 1.0} and ev.expert_share == {"seg": [1.0]}


def test_joint_accuracy_and_confusion_in_the_evaluation():
    from medmoe.multitask.data.splits import synthetic_split

    data = synthetic_split(split="val", seed=0, n_cls=6, n_seg=0, size=(32, 48))
    torch.manual_seed(0)
    cfg = MultiTaskConfig(tasks=("dr", "dme"), backbone_width=4, head_width=8, image_size=(32, 48))
    ev = evaluate_split(MultiTaskMoE(config=cfg), data)
    dr = np.array(ev.confusion["dr"])
    assert dr.shape == (5, 5) and dr.sum() == 6
    assert dr.sum(1).tolist() == np.bincount(data.grading.dr, minlength=5).tolist()
    assert ev.metrics["dr_acc"] == pytest.approx(np.trace(dr) / 6)
    assert 0 <= ev.metrics["joint_acc"] <= min(ev.metrics["dr_acc"], ev.metrics["dme_acc"])
    assert sum(ev.expert_share["dr"]) == pytest.approx(ev.experts_used["dr"])
