"""Datasets on disk: the nnU-Net v2 raw layout and the SAM-Med3D layout.

In the nnU-Net layout an image may also be a DICOM series, as a folder or ``.zip`` named like
the image (``imagesTr/<case>_0000/``); labels stay NIfTI (or NRRD).

Each (case, label value) pair is one :class:`Target`: a multi-label map gives one target per
foreground label, which is what an interactive model is prompted with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from medmoe.data.io import save_volume
from medmoe.errors import InputError


class Target(NamedTuple):
    case_id: str
    image: Path
    label: Path
    value: int
    name: str


def _case_image(folder: Path, stem: str, ending: str) -> Path | None:
    """``stem + ending``, or else a DICOM series of that name: a folder or a ``.zip``."""
    for image in (folder / f"{stem}{ending}", folder / f"{stem}.zip"):
        if image.is_file():
            return image
    series = folder / stem
    return series if series.is_dir() else None


def _nnunet_targets(root: Path) -> list[Target]:
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{root / 'dataset.json'}: cannot read ({err})") from None
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{root / 'dataset.json'}: no 'labels' mapping")
    ending = meta.get("file_ending", ".nii.gz")
    names = {}
    for name, value in labels.items():
        if isinstance(value, list | tuple):  # nnU-Net region-based labels: not one target
            continue
        if int(value) != 0:
            names[int(value)] = str(name)
    targets = []
    for label_path in sorted((root / "labelsTr").glob(f"*{ending}")):
        case = label_path.name[: -len(ending)]
        image = _case_image(root / "imagesTr", f"{case}_0000", ending)
        if image is None:
            raise InputError(
                f"{label_path}: no matching image {root / 'imagesTr' / (case + '_0000' + ending)}"
                " (or DICOM series folder/.zip of that name)"
            )
        targets += [Target(case, image, label_path, v, n) for v, n in sorted(names.items())]
    return targets


def _sam_med3d_targets(root: Path) -> list[Target]:
    targets = []
    for labels_dir in sorted(root.glob("*/*/labelsTr")):
        target_name = labels_dir.parent.parent.name
        for label_path in sorted(labels_dir.glob("*.nii*")):
            image = labels_dir.parent / "imagesTr" / label_path.name
            if not image.is_file():
                raise InputError(f"{label_path}: no matching image {image}")
            case = f"{labels_dir.parent.name}/{label_path.name.split('.')[0]}"
            targets.append(Target(case, image, label_path, 1, target_name))
    return targets


def find_targets(
    root: str | os.PathLike, *, labels: Sequence[str | int] | None = None
) -> list[Target]:
    """Every (case, label) target of a dataset, optionally restricted to some label names/values."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    if (root / "dataset.json").is_file():
        targets = _nnunet_targets(root)
    else:
        targets = _sam_med3d_targets(root)
    if labels:
        wanted = {str(x) for x in labels}
        known = {t.name for t in targets} | {str(t.value) for t in targets}
        unknown = sorted(wanted - known)
        if unknown:
            raise InputError(f"{root}: unknown labels {unknown}; known: {sorted(known)}")
        targets = [t for t in targets if t.name in wanted or str(t.value) in wanted]
    if not targets:
        raise InputError(
            f"{root}: no cases found (expected nnU-Net v2 raw layout with dataset.json, imagesTr/, "
            "labelsTr/, or the SAM-Med3D layout <target>/<dataset>/{imagesTr,labelsTr})"
        )
    return targets


def write_nnunet_dataset(
    root: str | os.PathLike,
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    labels: dict[str, int],
) -> Path:
    """Write ``{case: (image, label, affine)}`` in the nnU-Net v2 raw layout (for tests, demos)."""
    root = Path(root)
    for case, (image, label, affine) in cases.items():
        save_volume(root / "imagesTr" / f"{case}_0000.nii.gz", image.astype(np.float32), affine)
        save_volume(root / "labelsTr" / f"{case}.nii.gz", label.astype(np.uint8), affine)
    meta = {
        "channel_names": {"0": "image"},
        "labels": {"background": 0, **labels},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root
