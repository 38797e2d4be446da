"""Table 1 / Table 2 of a MoE bundle on a user's dataset: ``medmoe evaluate --moe --groups``.

``GROUPS.json`` maps each expert of the bundle to the label values it was trained for,
``{"hippocampus": [17, 53], "amygdala": [18, 54]}``; every other label of the dataset is
"other". Each labelled structure of each case gives one crop: SAM-Med3D's 128^3, 1.5 mm crop
centred on the structure, its label resampled into the crop (nearest neighbour). The crops are
evaluated by :func:`medmoe.eval.moe_methods.evaluate_crop`, exactly as the demo's are, and the
tables come from :func:`medmoe.eval.moe_tables.subject_results` with the dataset's folder name
as the subject.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medmoe.data.crop import Sam3DCrop
from medmoe.data.datasets import Target
from medmoe.data.io import load_label, load_volume
from medmoe.errors import InputError
from medmoe.eval.moe_methods import EvalCrop, evaluate_crop
from medmoe.eval.moe_stats import EvalRow
from medmoe.eval.moe_tables import DEFAULT_TAUS, SubjectResults, TableSpec, subject_results

DEFAULT_CLICKS = 6  # the paper's 6 points (and the demo's)


def read_groups(path: str | Path) -> dict[str, list[int]]:
    """``GROUPS.json`` as ``{expert: [label values]}`` (checked: names to non-empty lists of
    integers, no value in two groups)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such groups file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a JSON file ({err})") from None
    return check_groups(data, source=str(path))


def check_groups(data: Any, *, source: str = "groups") -> dict[str, list[int]]:
    if not isinstance(data, dict) or not data:
        raise InputError(f"{source}: expected an object mapping expert names to label values")
    out: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for name, values in data.items():
        ok = isinstance(values, list) and values
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
        if not ok:
            raise InputError(
                f"{source}: {name!r} must map to a non-empty list of label values > 0, got {values!r}"
            )
        for v in values:
            if v in seen:
                raise InputError(f"{source}: label {v} is in both {seen[v]!r} and {name!r}")
            seen[v] = name
        out[str(name)] = [int(v) for v in values]
    return out


def task_of_values(
    groups: Mapping[str, Sequence[int]], expert_names: Sequence[str]
) -> dict[int, int]:
    """Label value -> gate index (1 for the bundle's first expert, ...); the groups must name
    the bundle's experts exactly."""
    names = list(expert_names)
    missing = [n for n in names if n not in groups]
    extra = [n for n in groups if n not in names]
    if missing or extra:
        raise InputError(
            f"the groups must name the bundle's experts ({', '.join(names)}): "
            + "; ".join(
                p
                for p in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"not in the bundle: {', '.join(extra)}" if extra else "",
                )
                if p
            )
        )
    return {v: names.index(name) + 1 for name, values in groups.items() for v in values}


def dataset_crops(
    targets: Iterable[Target], tasks: Mapping[int, int], *, subject: str
) -> Iterator[EvalCrop]:
    """One crop per structure present in a case (one case in memory at a time)."""
    loaded: tuple[str, Any, Any] | None = None
    for t in targets:
        if loaded is None or loaded[0] != t.case_id:
            loaded = (t.case_id, load_volume(t.image), load_label(t.label))
        _, image, label = loaded
        if label.array.shape != image.array.shape:
            raise InputError(f"{t.label}: shape {label.array.shape} differs from the image's")
        gt = label.array == t.value
        if not gt.any():
            continue
        crop = Sam3DCrop.around_mask(image, gt)
        gt128 = crop.apply_label(gt.astype(np.uint8)) > 0
        if not gt128.any():  # smaller than half a crop voxel: nothing to click on
            continue
        yield EvalCrop(crop.image, gt128, tasks.get(t.value, 0), t.name, subject)


def evaluate_groups(
    moe,
    targets: Iterable[Target],
    groups: Mapping[str, Sequence[int]],
    *,
    subject: str,
    taus: Sequence[float] = DEFAULT_TAUS,
    clicks: int = DEFAULT_CLICKS,
    seed: int = 0,
    nsd_mm: float = 2.0,
    bootstrap: int = 2000,
    progress: bool = True,
) -> tuple[list[EvalRow], SubjectResults, TableSpec]:
    """The rows and the tables of ``moe`` on the dataset's ``targets``."""
    from tqdm.auto import tqdm

    tasks = task_of_values(groups, moe.expert_names)
    spec = TableSpec(
        groups=tuple(moe.expert_names), taus=tuple(taus), bootstrap=bootstrap, seed=seed
    )
    moe = moe.eval()
    rows: list[EvalRow] = []
    n_groups = len(spec.groups)
    crops = dataset_crops(targets, tasks, subject=subject)
    for i, crop in enumerate(
        tqdm(crops, desc="evaluate (groups)", unit="crop", disable=not progress)
    ):
        rows += evaluate_crop(
            moe, crop, i, groups=n_groups, taus=spec.taus, clicks=clicks, seed=seed, nsd_mm=nsd_mm
        )
    if not rows:
        raise InputError("no structure of the dataset could be cropped: nothing to evaluate")
    # a group (or "other") without crops leaves its cells NaN (n/a), as in the demo's Subject A
    return rows, subject_results(rows, subject, spec), spec
