"""The interactive evaluation protocol.

For each target the crop is centred on the ground truth (the published protocol), the first
prompt comes from the ground truth (a ``center`` click, or its bounding box), and every further
click is simulated on the current error and fed back together with the previous low-resolution
logits. Predictions are mapped back onto the original grid before the metrics are computed.
Any predictor with :class:`medmoe.sam3d.Sam3DPredictor`'s ``set_image``/``predict`` interface
works, :class:`medmoe.moe.MoEPredictor` included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from medmoe.data.crop import Sam3DCrop
from medmoe.data.datasets import Target
from medmoe.data.io import load_label, load_volume
from medmoe.data.volume import Volume
from medmoe.errors import InputError
from medmoe.eval.clicks import box_from_mask, first_click, next_click
from medmoe.eval.metrics import dice, hd95, nsd

PROMPTS = ("points", "box")


def _mask(prediction) -> np.ndarray:
    return prediction.mask[0, 0].detach().cpu().numpy().astype(bool)


def run_clicks(
    predictor,
    image128: np.ndarray,
    gt128: np.ndarray,
    *,
    n_clicks: int,
    prompt: str = "points",
    method: str = "random",
    rng: np.random.Generator | None = None,
    set_image: bool = True,
) -> list[Any]:
    """The interactive loop on one crop; returns the prediction after each of ``n_clicks`` steps.

    With ``prompt="box"`` step 1 is the ground-truth box alone and later steps add clicks.
    """
    if prompt not in PROMPTS:
        raise InputError(f"unknown prompt {prompt!r}; use {', '.join(PROMPTS)}")
    if n_clicks < 1:
        raise InputError(f"n_clicks must be >= 1, got {n_clicks}")
    gt128 = np.asarray(gt128, dtype=bool)
    if set_image:
        predictor.set_image(image128)
    points: list[np.ndarray] = []
    labels: list[int] = []
    box = box_from_mask(gt128) if prompt == "box" else None
    if box is None:
        click = first_click(gt128, method="center")
        points.append(click.point)
        labels.append(click.label)
    outputs = []
    low = None
    for step in range(n_clicks):
        if step > 0:
            click = next_click(_mask(outputs[-1]), gt128, method=method, rng=rng)
            if click is None:  # perfect already: repeat the last answer
                outputs.append(outputs[-1])
                continue
            points.append(click.point)
            labels.append(click.label)
        pred = predictor.predict(
            points=np.stack(points) if points else None,
            labels=np.array(labels) if points else None,
            box=box,
            mask_input=low,
        )
        low = pred.low_res_logits
        outputs.append(pred)
    return outputs


def iter_targets(
    targets: Iterable[Target], *, desc: str, progress: bool = True
) -> Iterator[tuple[dict[str, Any], Volume, np.ndarray]]:
    """Each target as ``(row, image, gt)``: its identity columns (case, label, name), its scan and
    its ground-truth mask (possibly empty). Scans are read once per case, one case in memory at
    a time; a label map whose shape differs from its scan's is refused."""
    from tqdm.auto import tqdm

    targets = list(targets)
    cache: dict[str, tuple[Volume, Volume]] = {}
    for t in tqdm(targets, desc=desc, unit="target", disable=not progress):
        if t.case_id not in cache:
            cache.clear()
            cache[t.case_id] = (load_volume(t.image), load_label(t.label))
        image, label = cache[t.case_id]
        if label.array.shape != image.array.shape:
            raise InputError(f"{t.label}: shape {label.array.shape} differs from the image's")
        yield {"case": t.case_id, "label": t.value, "name": t.name}, image, label.array == t.value


def evaluate_targets(
    predictor,
    targets: Iterable[Target],
    *,
    prompt: str = "points",
    clicks: Sequence[int] = (1,),
    method: str = "random",
    seed: int = 0,
    tolerance_mm: float = 2.0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One row per target: Dice, NSD and HD95 after each click count in ``clicks``."""
    clicks = sorted({int(c) for c in clicks})
    if not clicks or clicks[0] < 1:
        raise InputError(f"click counts must be >= 1, got {clicks}")
    rows = []
    for row, image, gt in iter_targets(targets, desc=f"evaluate ({prompt})", progress=progress):
        if not gt.any():
            row["status"] = "absent"
            rows.append(row)
            continue
        crop = Sam3DCrop.around_mask(image, gt)
        gt128 = crop.apply_label(gt.astype(np.uint8)) > 0
        rng = np.random.default_rng([seed, len(rows)])
        outs = run_clicks(
            predictor, crop.image, gt128, n_clicks=clicks[-1], prompt=prompt, method=method, rng=rng
        )
        row["status"] = "ok"
        for n in clicks:
            pred = crop.invert(_mask(outs[n - 1]))
            row[f"dice@{n}"] = dice(pred, gt)
            row[f"nsd@{n}"] = nsd(pred, gt, spacing=image.spacing, tolerance_mm=tolerance_mm)
            row[f"hd95@{n}"] = hd95(pred, gt, spacing=image.spacing)
        last = outs[-1]
        for key in ("expert_name", "s_top"):
            if hasattr(last, key):
                row[key] = getattr(last, key)
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]], clicks: Sequence[int]) -> list[dict[str, Any]]:
    """Per label name: mean Dice and NSD, median HD95 (finite values) per click count."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out = []
    for name in sorted({r["name"] for r in ok}):
        sel = [r for r in ok if r["name"] == name]
        entry: dict[str, Any] = {"name": name, "n": len(sel)}
        for c in clicks:
            entry[f"dice@{c}"] = float(np.mean([r[f"dice@{c}"] for r in sel]))
            entry[f"nsd@{c}"] = float(np.mean([r[f"nsd@{c}"] for r in sel]))
            finite = [r[f"hd95@{c}"] for r in sel if np.isfinite(r[f"hd95@{c}"])]
            entry[f"hd95@{c}"] = float(np.median(finite)) if finite else float("inf")
        out.append(entry)
    return out


def format_table(summary: list[dict[str, Any]], clicks: Sequence[int]) -> str:
    head = ["target", "n"] + [f"{m}@{c}" for c in clicks for m in ("dice", "nsd", "hd95")]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for s in summary:
        cells = [s["name"], str(s["n"])] + [
            f"{s[f'{m}@{c}']:.3f}" if m != "hd95" else f"{s[f'hd95@{c}']:.1f}"
            for c in clicks
            for m in ("dice", "nsd", "hd95")
        ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)
