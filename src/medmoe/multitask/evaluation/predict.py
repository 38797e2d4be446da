"""Predict grades and lesion masks for one fundus photograph; write JSON, PNG masks, an overlay.

The photograph keeps its aspect ratio: its field of view is cropped and padded to the model's
aspect before resizing (:mod:`~medmoe.multitask.data.fov`), and the masks are mapped back to
the photograph's own size and place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medmoe.errors import InputError
from medmoe.multitask.constants import GRADE_TASKS
from medmoe.multitask.data.fov import fov_box, fov_frame
from medmoe.multitask.data.preprocess import normalize
from medmoe.multitask.model.moe import MultiTaskMoE
from medmoe.utils.files import atomic_write

DR_NAMES = ("no DR", "mild", "moderate", "severe", "proliferative")
COLORS = {
    "MA": (255, 0, 0),
    "HE": (160, 0, 255),
    "EX": (255, 255, 0),
    "SE": (0, 255, 255),
    "OD": (0, 255, 0),
}


def read_photo(path: str | os.PathLike) -> Image.Image:
    """The photograph at ``path`` as an RGB PIL image, at its own size; one-line error if unreadable."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read image {path}: {err}") from None


def photo_outputs(model: MultiTaskMoE, image: np.ndarray, *, dense: bool = False) -> dict:
    """The device side: the model's outputs (``HeadOutput`` per task) for one ``(3, H, W)``
    image in [0, 1], on the model's device, normalised as the model's config says."""
    cfg = model.config
    device = next(model.parameters()).device
    x = torch.as_tensor(image[None], dtype=torch.float32).to(device)
    return model(normalize(x, mean=cfg.mean, std=cfg.std), dense=dense)


@torch.no_grad()
def predict_photo(model: MultiTaskMoE, photo: Image.Image) -> dict:
    """Grades and masks for one photograph at any size and aspect ratio. The model sees its
    field of view padded to the model's aspect (:func:`~medmoe.multitask.data.fov.photo_frame`,
    as in training); the lesion masks ``(C, H, W)`` come back on the photograph's own pixels.
    Computed on the model's device (:func:`photo_outputs`), then read back to the host."""
    box = fov_box(np.asarray(photo.convert("RGB")))
    frame = fov_frame(box, source=(photo.height, photo.width), size=model.config.image_size)
    out = photo_outputs(model, frame.image(photo))
    res: dict = {"experts_used": {t: int(o.mask.sum().cpu()) for t, o in out.items()}}
    res["field_of_view"] = {"box": list(box), "window": list(frame.window)}
    for t in GRADE_TASKS:
        if t in out:
            probs = out[t].output.float().softmax(-1)[0].cpu()
            res[t] = {
                "grade": int(probs.argmax()),
                "probabilities": [round(float(p), 4) for p in probs],
            }
    if "seg" in out:
        probs = frame.to_source(out["seg"].output.float().sigmoid()[0])
        res["masks"] = (probs > 0.5).cpu().numpy()
    return res


def write_prediction(res: dict, photo: Image.Image, lesions, out_dir: str | os.PathLike) -> Path:
    """``prediction.json`` (grades, experts used, field of view, lesion pixel counts), a PNG
    mask per lesion and ``overlay.png``, all at the photograph's size."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in res.items() if k != "masks"}
    if "dr" in res:
        summary["dr"]["name"] = DR_NAMES[res["dr"]["grade"]]
    overlay = np.array(photo.convert("RGB"), np.uint8)
    if "masks" in res:
        for c, lesion in enumerate(lesions):
            mask = res["masks"][c]
            with atomic_write(out / f"{lesion}.png") as tmp:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
            overlay[mask] = (
                0.5 * overlay[mask] + 0.5 * np.array(COLORS.get(lesion, (255, 255, 255)))
            ).astype(np.uint8)
            summary.setdefault("lesion_pixels", {})[lesion] = int(mask.sum())
    with atomic_write(out / "overlay.png") as tmp:
        Image.fromarray(overlay).save(tmp, format="PNG")
    with atomic_write(out / "prediction.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return out
