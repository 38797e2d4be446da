"""The report's kind of lesion figure: per photograph, the image, the ground truth and the
prediction of every lesion, at the photograph's native resolution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from medmoe.multitask.data.datasets import SegmentationSet
from medmoe.multitask.evaluation.evaluate import lesion_outputs
from medmoe.multitask.model.moe import MultiTaskMoE


def richest(data: SegmentationSet, count: int) -> list[int]:
    """The ``count`` photographs with the most lesion kinds present (then the most lesion
    pixels; the first on ties): the ones a figure shows most with."""
    keys = []
    for i in range(len(data)):
        m = data.native_masks(i)
        keys.append((-int(m.any(axis=(1, 2)).sum()), -int(m.sum()), i))
    return [i for *_, i in sorted(keys)[:count]]


@torch.no_grad()
def native_predictions(
    model: MultiTaskMoE, data: SegmentationSet, index: int, thresholds: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, masks)`` ``(C, H0, W0)`` of photograph ``index`` at its native size, the
    masks thresholded per lesion (``thresholds``, e.g. chosen on validation)."""
    model.eval()
    image = data[index]["image"][None]
    native = data.native_masks(index)
    prob, _ = lesion_outputs(model, image, dense=False)
    prob = data.frame(index).to_source(prob[0]).cpu().numpy()
    if prob.shape != native.shape:
        raise ValueError(f"photograph {index}: {prob.shape} mapped back, masks {native.shape}")
    th = np.array([thresholds.get(x, 0.5) for x in model.config.lesions])[:, None, None]
    return prob, prob >= th


def lesion_figure(
    model: MultiTaskMoE,
    data: SegmentationSet,
    *,
    indices: Sequence[int],
    thresholds: Mapping[str, float],
    path: Path,
    title: str,
) -> Path:
    """Rows: lesions; per photograph three columns: image, ground truth, prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lesions = model.config.lesions
    fig, axes = plt.subplots(
        len(lesions), 3 * len(indices), figsize=(2.2 * 3 * len(indices), 1.6 * len(lesions))
    )
    axes = np.asarray(axes).reshape(len(lesions), 3 * len(indices))
    for j, i in enumerate(indices):
        truth = data.native_masks(i)
        _, pred = native_predictions(model, data, i, thresholds)
        photo = data.native_image(i).transpose(1, 2, 0)
        for r, x in enumerate(lesions):
            panels = (photo, truth[r], pred[r])
            names = (f"image {i}", f"{x} truth", f"{x} prediction (t={thresholds.get(x, 0.5):.2g})")
            for k, (panel, name) in enumerate(zip(panels, names, strict=True)):
                ax = axes[r, 3 * j + k]
                ax.imshow(panel, cmap=None if k == 0 else "gray", vmin=0, vmax=1)
                ax.set_title(name, fontsize=7)
                ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def usage_figure(history: Sequence[Mapping], path: Path, title: str) -> Path:
    """Per task and epoch, the share of samples that kept each expert (training), one panel per
    task; the dense warm-up is where every share is 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(history[-1].get("usage", {}))
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(3 * max(len(tasks), 1), 2.6))
    for ax, task in zip(np.atleast_1d(axes), tasks, strict=False):
        epochs = [h["epoch"] + 1 for h in history if task in h.get("usage", {})]
        shares = np.array(
            [h["usage"][task]["share"] for h in history if task in h.get("usage", {})]
        )
        for e in range(shares.shape[1]):
            ax.plot(epochs, shares[:, e], marker="o", ms=3, label=f"expert {e}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("epoch")
        ax.set_title(f"{task}: share of samples", fontsize=8)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
