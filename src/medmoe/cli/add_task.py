"""``medmoe moe add-task``: teach a bundle a new structure from a dataset folder, in one command.

The same job as MONAI Label's ``POST /train/medmoe_moe`` (:func:`medmoe.continual.pipeline.
run_job`): an expert for the new structure, the gate retrained over it and the bundle's
experts, then the non-forgetting guard on held-back scans; the new bundle is written as the
next version folder only if the guard accepts it. Here the labels come from a dataset folder
(nnU-Net v2 raw layout, or SAM-Med3D's) instead of the datastore.

``--labels`` names the dataset's labels (names or values) that make up the new structure; with
more than one, their voxels are merged into one structure called ``--name`` (label maps
rewritten into the job's folder, the dataset is never written to). Every other label of the
dataset stays what it is: an existing expert's structure when its name is among that
expert's labels, else "other" (the general model's).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from pathlib import Path

from medmoe.cli.common import add_moe_arg, add_seed_arg, positive_int
from medmoe.utils.device import add_device_arg


def register(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "add-task",
        help="train an expert for a new structure, retrain the gate, guard and write a version",
    )
    add_moe_arg(p, help="the bundle to extend (it is not changed)")
    p.add_argument("--dataset", type=Path, required=True, help="a dataset folder (nnU-Net v2)")
    p.add_argument(
        "--labels", nargs="+", required=True, metavar="LABEL",
        help="the dataset's label names or values that make up the new structure",
    )  # fmt: skip
    p.add_argument("--name", required=True, help="the new expert's name (letters, digits, _ -)")
    p.add_argument(
        "--epochs", type=positive_int, default=10, help="epochs of the expert and of the gate"
    )
    p.add_argument(
        "--versions", type=Path,
        help="the folder of bundle versions (default: the bundle's own folder when it is a "
        "version vNNNN, else <BUNDLE>-versions beside it)",
    )  # fmt: skip
    p.add_argument(
        "--min-ratio", type=float, default=0.95,
        help="each old task must keep >= this x its Dice, in [0, 1] (default 0.95)",
    )  # fmt: skip
    p.add_argument(
        "--accept-without-gain", action="store_true",
        help="accept even if the new task's Dice does not beat the bundle's own",
    )  # fmt: skip
    add_seed_arg(p)
    add_device_arg(p)
    p.set_defaults(func=run_add_task)


def _cases(dataset: Path, wanted: Sequence[str], name: str, job: Path):
    """``(cases, label)``: one :class:`CaseSpec` per labelled case of the dataset, and the
    structure name the job learns (the dataset's own name for one label, else ``name``)."""
    from medmoe.continual import CaseSpec
    from medmoe.data.datasets import find_targets
    from medmoe.errors import InputError

    targets = find_targets(dataset)
    find_targets(dataset, labels=list(wanted))  # unknown names or values: refused in one line
    chosen = {t.name for t in targets if t.name in wanted or str(t.value) in wanted}
    by_case: dict[str, list] = {}
    for t in targets:
        by_case.setdefault(t.case_id, []).append(t)
    label = next(iter(chosen)) if len(chosen) == 1 else name
    if label in {t.name for t in targets} - chosen:
        raise InputError(f"--name {name!r} is another label of {dataset}: choose another name")
    cases = []
    for _, ts in sorted(by_case.items()):
        values = {t.name: t.value for t in ts if t.name not in chosen}
        merged = [t.value for t in ts if t.name in chosen]
        path = ts[0].label
        if len(merged) > 1:
            path = _merge(path, merged, job / "labels" / f"{len(cases):04d}.nii.gz")
        if merged:
            values[label] = merged[0]
        safe = f"case{len(cases):04d}"  # the job's ids (seeds, split); never a path
        cases.append(
            CaseSpec(image_id=safe, image=str(ts[0].image), label=str(path), values=values)
        )
    return tuple(cases), label


def _merge(src: Path, values: list[int], out: Path) -> Path:
    """``src``'s label map with the voxels of every value in ``values`` set to the first."""
    import numpy as np

    from medmoe.data import load_label, save_volume

    lab = load_label(src)
    array = np.asarray(lab.array).copy()
    array[np.isin(array, values)] = values[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_volume(out, array.astype(np.uint8), lab.affine)


def _versions_root(bundle: Path, given: Path | None) -> Path:
    from medmoe.continual.versions import VERSION

    if given is not None:
        return given.resolve()
    bundle = bundle.resolve()
    return (
        bundle.parent if VERSION.match(bundle.name) else bundle.parent / f"{bundle.name}-versions"
    )


def run_add_task(args: argparse.Namespace) -> int:
    from medmoe.continual import ContinualConfig, JobSpec, TrainRequest
    from medmoe.continual.pipeline import run_job
    from medmoe.continual.versions import clean_parts, next_version, write_current
    from medmoe.moe import read_moe_config

    read_moe_config(args.moe)  # not a bundle: refused in one line before anything is written
    request = TrainRequest(expert=args.name, label="pending", max_epochs=args.epochs)
    config = ContinualConfig(
        min_ratio=args.min_ratio, require_new_gain=not args.accept_without_gain,
        seed=args.seed, device=args.device,
    )  # fmt: skip
    root = _versions_root(args.moe, args.versions)
    clean_parts(root)
    job_id = uuid.uuid4().hex[:12]
    job = root / "jobs" / job_id
    cases, label = _cases(args.dataset, [str(x) for x in args.labels], request.expert, job)
    spec = JobSpec(
        job_id=job_id, request=TrainRequest(args.name, label, args.epochs), config=config,
        bundle=str(args.moe.resolve()), version_dir=str(next_version(root)), job_dir=str(job),
        cases=cases,
    )  # fmt: skip
    job.mkdir(parents=True, exist_ok=True)
    spec.write(job / "spec.json")
    result = run_job(spec, report=lambda **e: print(_progress(e), flush=True))
    print(result["table"])
    if not result["accepted"]:
        print(f"refused: {args.moe} stays as it is; the job's files are in {job}")
        return 1
    version = root / result["version"]
    write_current(root, version)
    print(f"accepted: bundle {version} (experts {result['experts']}, tau {result['tau']:.2f})")
    return 0


def _progress(event: dict) -> str:
    stage = event.pop("stage")
    rest = ", ".join(f"{k} {v}" for k, v in event.items())
    return f"stage: {stage}" + (f" ({rest})" if rest else "")
