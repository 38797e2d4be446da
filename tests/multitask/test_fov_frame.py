"""Issue #27, item 5: a photograph keeps its aspect ratio. The field of view (the bright disc) is
cropped, padded to the model's aspect and resized, in ``fundus predict`` and in IDRiD's training
and evaluation alike, and the predicted masks come back at the photograph's own size and place.

The photograph: 300 x 500 (H x W), black, a disc of radius 100 centred at row 150, column 330
(off-centre), and a 20 x 20 green "lesion" at rows 120-139, columns 380-399 inside it. A stub
model marks green pixels as MA, so where its mask lands shows where the geometry maps it.

On the code before this change ``predict`` resized the whole photograph to 64 x 96: the disc
became 42.7 x 38.4 pixels (not round) and the masks came back at 64 x 96, not 300 x 500.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medmoe.cli.main import main
from medmoe.multitask.data.fov import FovFrame, fov_box, fov_frame, photo_frame
from medmoe.multitask.model.heads import HeadOutput
from medmoe.multitask.model.moe import MultiTaskConfig

H, W, CY, CX, R = 300, 500, 150, 330, 100
LESION = (slice(120, 140), slice(380, 400))
MODEL_SIZE = (64, 96)


def photograph() -> np.ndarray:
    y, x = np.ogrid[:H, :W]
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[(y - CY) ** 2 + (x - CX) ** 2 <= R * R] = (180, 80, 40)
    rgb[LESION] = (40, 230, 40)
    return rgb


class GreenIsMA(nn.Module):
    """A stand-in model: MA logits are high where the (un-normalised) input is green; it records
    the images it is given."""

    def __init__(self, tasks=("dr", "dme", "seg")) -> None:
        super().__init__()
        self.config = MultiTaskConfig(image_size=MODEL_SIZE, tasks=tasks, num_experts=1)
        self.heads = nn.ModuleDict({t: nn.Identity() for t in tasks})
        self.anchor = nn.Parameter(torch.zeros(1))  # a parameter gives the device
        self.seen: list[torch.Tensor] = []

    def forward(self, x, *, dense=False, tasks=None):
        mean = torch.tensor(self.config.mean).reshape(1, 3, 1, 1)
        std = torch.tensor(self.config.std).reshape(1, 3, 1, 1)
        img = x * std + mean
        self.seen.append(img)
        b = x.shape[0]
        seg = torch.full((b, 5, *x.shape[-2:]), -20.0)
        seg[:, 0] = 40 * (img[:, 1] - img[:, 0]) - 5  # green well above red: MA
        kept = torch.ones(b, 1, dtype=torch.bool)
        out = {"seg": HeadOutput(output=seg, probs=kept.float(), mask=kept)}
        out["dr"] = HeadOutput(output=torch.zeros(b, 5), probs=kept.float(), mask=kept)
        out["dme"] = HeadOutput(output=torch.zeros(b, 3), probs=kept.float(), mask=kept)
        return {t: out[t] for t in (tasks or self.config.tasks)}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_fov_box_and_frame_by_hand():
    # rows 50 and 250 hold 1 disc pixel (not > 1 % of 500), rows 51 and 249 hold 29: the box is
    # rows 51..249, columns 231..429 (half-open ends 250 and 430)
    assert fov_box(photograph()) == (51, 250, 231, 430)
    frame = fov_frame((51, 250, 231, 430), source=(H, W), size=MODEL_SIZE)
    # 199 x 199 padded to 3:2 -> 199 x round(298.5) = 298, about the centre (150.5, 330.5)
    assert frame.window == (51, 181, 199, 298)
    tall = fov_frame((0, 10, 0, 40), source=(10, 40), size=(20, 20))  # a wide box, square model
    assert tall.window == (-15, 0, 40, 40)  # padded above and below, beyond the photograph
    assert fov_box(np.zeros((5, 7, 3), np.uint8)) == (0, 5, 0, 7)  # all dark: the whole image
    assert fov_box(np.full((5, 7, 3), 0.5, np.float32)) == (0, 5, 0, 7)  # no surround


def test_the_real_retina_photographs_field_of_view():
    """skimage's retina.jpg (1411 x 1411, a disc nearly touching every edge): a threshold sweep
    of 0.05 / 0.08 / 0.12 puts the disc's edge at rows 5-6 .. 1400-1401 and columns 7-8 ..
    1400-1401, so the box is the disc, not the JPEG's dark surround."""
    data = pytest.importorskip("skimage.data", reason="scikit-image bundles retina.jpg")
    rgb = data.retina()
    assert rgb.shape == (1411, 1411, 3)
    box = fov_box(rgb)
    assert box == (6, 1401, 8, 1401)
    frame = fov_frame(box, source=(1411, 1411), size=MODEL_SIZE)
    # 1395 x 1393 padded to 3:2: 1395 x round(2092.5) = 2092, centred on column 704.5
    assert frame.window == (6, -342, 1395, 2092)
    image = frame.image(Image.fromarray(rgb))
    top, bottom, left, right = fov_box(image.transpose(1, 2, 0))
    assert (bottom - top) / (right - left) == pytest.approx(1.0, abs=0.05)


def test_frame_keeps_the_disc_round_and_maps_back():
    photo = Image.fromarray(photograph())
    frame = photo_frame(photo, MODEL_SIZE)
    image = frame.image(photo)
    assert image.shape == (3, *MODEL_SIZE)
    top, bottom, left, right = fov_box(image.transpose(1, 2, 0))
    assert (bottom - top) / (right - left) == pytest.approx(1.0, abs=0.05)  # stretched: 1.11
    mask = np.zeros((H, W), bool)
    mask[LESION] = True
    framed = frame.mask(mask)
    green = image[1] > image[0]
    assert green.any() and framed[green].all()  # the mask covers the lesion's pixels
    back = frame.to_source(torch.from_numpy(framed[None].astype(np.float32)))[0].numpy() > 0.5
    assert back.shape == (H, W) and iou(back, mask) > 0.8  # 0.87: max pooling widens it
    whole = FovFrame.whole((4, 6), (4, 6))
    maps = torch.rand(2, 4, 6)
    assert torch.equal(whole.to_source(maps), maps)


def test_predict_keeps_aspect_and_returns_masks_at_the_photographs_place(
    tmp_path, monkeypatch, capsys
):
    import medmoe.multitask.model.artifact as artifact

    stub = GreenIsMA()
    monkeypatch.setattr(artifact, "load_fundus_model", lambda *a, **k: stub)
    Image.fromarray(photograph()).save(tmp_path / "photo.png")
    argv = ["fundus", "predict", "--image", str(tmp_path / "photo.png"), "--model", "stub"]
    assert main([*argv, "--out", str(tmp_path / "p"), "--device", "cpu"]) == 0
    (seen,) = stub.seen
    assert tuple(seen.shape[-2:]) == MODEL_SIZE
    top, bottom, left, right = fov_box(seen[0].numpy().transpose(1, 2, 0).clip(0, 1))
    assert (bottom - top) / (right - left) == pytest.approx(1.0, abs=0.05)  # the disc is round
    with Image.open(tmp_path / "p" / "MA.png") as im:
        assert im.size == (W, H)
        ma = np.asarray(im) > 0
    truth = np.zeros((H, W), bool)
    truth[LESION] = True
    assert iou(ma, truth) > 0.8  # 0.88: at the lesion's place in the photograph
    with Image.open(tmp_path / "p" / "overlay.png") as im:
        assert im.size == (W, H)
    pred = json.loads((tmp_path / "p" / "prediction.json").read_text())
    assert pred["lesion_pixels"]["MA"] == int(ma.sum()) and pred["lesion_pixels"]["HE"] == 0
    assert pred["field_of_view"] == {"box": [51, 250, 231, 430], "window": [51, 181, 199, 298]}


def idrid_one_photograph(root):
    img_dir = root / "A. Segmentation" / "1. Original Images" / "b. Testing Set"
    gt = root / "A. Segmentation" / "2. All Segmentation Groundtruths" / "b. Testing Set"
    img_dir.mkdir(parents=True)
    for d in ("1. Microaneurysms", "2. Haemorrhages", "3. Hard Exudates", "4. Soft Exudates"):
        (gt / d).mkdir(parents=True)
    (gt / "5. Optic Disc").mkdir(parents=True)
    Image.fromarray(photograph()).save(img_dir / "IDRiD_55.png")
    (img_dir / "IDRiD_55.png").rename(img_dir / "IDRiD_55.jpg")  # lossless, named as IDRiD's
    ma = np.zeros((H, W), np.uint8)
    ma[LESION] = 255
    Image.fromarray(ma).save(gt / "1. Microaneurysms" / "IDRiD_55_MA.tif")


def test_idrid_training_and_native_evaluation_use_the_same_frame(tmp_path):
    from medmoe.multitask.data.datasets import FundusData, GradingSet, SegmentationSet
    from medmoe.multitask.data.idrid import segmentation_samples
    from medmoe.multitask.evaluation.evaluate import evaluate_split

    idrid_one_photograph(tmp_path)
    samples = segmentation_samples(tmp_path, "test")
    seg = SegmentationSet(images=samples, masks=None, size=MODEL_SIZE)
    item = seg[0]
    image, masks = item["image"].numpy(), item["masks"].numpy()
    top, bottom, left, right = fov_box(image.transpose(1, 2, 0))
    assert (bottom - top) / (right - left) == pytest.approx(1.0, abs=0.05)  # not stretched
    green = image[1] > image[0]
    assert green.any() and masks[0][green].all()  # the training target sits on the lesion
    assert seg.frame(0).window == (51, 181, 199, 298)
    grading = GradingSet(images=[samples[0].image], dr=[0], dme=[0], size=MODEL_SIZE)
    assert np.array_equal(grading[0]["image"].numpy(), image)  # graded photographs alike
    data = FundusData(GradingSet(images=[], dr=[], dme=[], size=MODEL_SIZE), seg)
    ev = evaluate_split(GreenIsMA(tasks=("seg",)), data, batch_size=1)
    # scored at 300 x 500 against the original mask: the stub's MA maps back onto the lesion
    assert ev.metrics["MA_dice"] > 0.9  # 0.93
    # the report's lesion figure: photograph, truth and prediction on the native pixels
    from medmoe.multitask.evaluation.figures import native_predictions

    assert seg.native_image(0).shape == (3, H, W)
    prob, pred = native_predictions(GreenIsMA(tasks=("seg",)), seg, 0, {})
    truth = np.zeros((H, W), bool)
    truth[LESION] = True
    assert prob.shape == (5, H, W) and iou(pred[0], truth) > 0.8


def test_synthetic_photographs_are_drawn_in_the_frame():
    """A synthetic photograph (disc radius 0.47 x 128 = 60.2 about (64, 96)) through the frame:
    the disc's rows 4..124 (121 rows) fill the window, a 128 / 121 = 1.058 enlargement, inside
    the training augmentation's +-10 % scale, so predict on a saved synthetic photograph sees
    what training saw."""
    from medmoe.multitask.data.synthetic import synth_fundus

    image, *_ = synth_fundus(np.random.default_rng(0), (128, 192))
    box = fov_box(image.transpose(1, 2, 0))
    assert box == (4, 125, 36, 157)
    assert fov_frame(box, source=(128, 192), size=(128, 192)).window == (4, 5, 121, 182)


def test_mapping_back_stays_on_the_maps_device():
    """On a GPU the probabilities are mapped back where they are (meta refuses a CPU mix-up)."""
    frame = fov_frame((51, 250, 231, 430), source=(H, W), size=MODEL_SIZE)
    out = frame.to_source(torch.empty(5, *MODEL_SIZE, device="meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (5, H, W)
