"""One continual-learning job, start to end: crops from the datastore, the new expert, the gate
over the new and the old experts, the guard, and the new bundle's version folder.

Everything is written under the job's folder, and the new bundle as ``<version>.part`` first:
it is renamed to ``<version>`` only once complete and accepted by the guard (a refused bundle
goes to ``<job>/rejected``), so a job killed at any point leaves the serving bundle alone and
no version folder half-written. ``report(**event)`` is told each stage as it starts.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from medmoe.continual.config import JobSpec
from medmoe.continual.crops import case_samples
from medmoe.continual.guard import GuardDecision, decide, measure
from medmoe.continual.selection import Plan, plan_job
from medmoe.errors import InputError
from medmoe.utils.files import atomic_write

Report = Callable[..., None]


def _base_path(bundle: Path, relative: str) -> Path:
    p = Path(relative)
    return p if p.is_absolute() else (bundle / p).resolve()


class _Serving:
    """The serving bundle as the job loads it (its own copy: the server's is never touched)."""

    def __init__(self, bundle: Path, device: torch.device) -> None:
        from medmoe.moe.bundle import EXPERTS_DIR, load_moe_bundle, read_moe_config
        from medmoe.moe.expert import read_expert_info

        self.dir = bundle
        self.config = read_moe_config(bundle)
        self.moe = load_moe_bundle(bundle).to(device).eval()
        self.base_path = _base_path(bundle, self.config.base_checkpoint)
        self.expert_dirs = {n: bundle / EXPERTS_DIR / n for n in self.config.experts}
        self.labels = {n: read_expert_info(d).labels for n, d in self.expert_dirs.items()}


def _crops(cases, *, serving: _Serving, plan: Plan, job: Path, config, device, part: str):
    from medmoe.data.training import LabelStore, build_crop_dataset
    from medmoe.moe.cache import EmbeddingCache

    cache = EmbeddingCache(
        root=job / "cache", base_sha256=serving.config.base_sha256,
        encoder=serving.moe.base.image_encoder, device=device,
    )  # fmt: skip
    samples = itertools.chain.from_iterable(
        case_samples(c, serving=serving.moe, plan=plan, cache=cache, config=config, device=device)
        for c in cases
    )
    try:
        return build_crop_dataset(samples, cache=cache, labels=LabelStore(root=job / part))
    except InputError:
        return None  # no crop at all


def _train_expert(spec: JobSpec, serving: _Serving, data, plan: Plan, job: Path, device):
    from medmoe.moe.expert import load_expert
    from medmoe.moe.train import train_expert
    from medmoe.moe.train_config import ExpertTrainConfig

    cfg, req = spec.config, spec.request
    mine = data.subset(i for i, r in enumerate(data.records) if r.task == plan.new_task)
    if not len(mine):
        raise InputError(f"no usable crop of {req.label!r} on the training scans")
    out = train_expert(
        base=serving.moe.base, base_sha256=serving.config.base_sha256, data=mine,
        name=req.expert, labels=[req.label], out_dir=job / "expert",
        config=ExpertTrainConfig(
            epochs=req.max_epochs, lr=cfg.expert_lr, batch_size=cfg.batch_size, seed=cfg.seed
        ),
        progress=False, device=device, keep_checkpoints=1,
    )  # fmt: skip
    decoder, _ = load_expert(out, base_sha256=serving.config.base_sha256)
    return decoder.to(device)


def _train_gate(spec: JobSpec, serving: _Serving, decoder, data, plan: Plan, job: Path, device):
    from medmoe.moe.train import train_moe
    from medmoe.moe.train_config import MoETrainConfig

    cfg = spec.config
    experts = {
        n: decoder if n == spec.request.expert else serving.moe.experts[n] for n in plan.experts
    }
    config = MoETrainConfig(
        epochs=cfg.gate_epochs or spec.request.max_epochs, lr_gate=cfg.gate_lr,
        batch_size=cfg.batch_size, warmup_epochs=cfg.warmup_epochs, balance_classes=True,
        seed=cfg.seed, weighting=serving.config.weighting,
    )  # fmt: skip
    moe, report = train_moe(
        base=serving.moe.base, base_sha256=serving.config.base_sha256, experts=experts,
        data=data, out_dir=job / "gate", config=config, progress=False, device=device,
        keep_checkpoints=1,
    )  # fmt: skip
    return moe, {**report, "config": asdict(config)}


def _guard(spec: JobSpec, serving: _Serving, moe, held, plan: Plan, device) -> GuardDecision:
    rows = []
    if held is not None:
        rows = measure(
            serving.moe, moe, held, names=plan.experts, new_task=plan.new_task, device=device
        )
    cfg = spec.config
    return decide(rows, min_ratio=cfg.min_ratio, require_new_gain=cfg.require_new_gain)


def _write(spec: JobSpec, serving: _Serving, moe, train_report: dict, decision, job: Path):
    from medmoe.moe.bundle import save_moe_bundle

    version = Path(spec.version_dir)
    part = version.with_name(version.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    dirs = {n: d for n, d in serving.expert_dirs.items() if n != spec.request.expert}
    dirs[spec.request.expert] = job / "expert"
    continual = {"job": spec.job_id, "request": asdict(spec.request), "guard": decision.to_dict()}
    save_moe_bundle(
        part, moe=moe, base_checkpoint=serving.base_path,
        base_sha256=serving.config.base_sha256, expert_dirs=dirs,
        train_report={**train_report, "continual": continual},
    )  # fmt: skip
    target = version if decision.accepted else job / "rejected"
    shutil.rmtree(job / "rejected", ignore_errors=True)
    part.rename(target)
    return target


def run_job(spec: JobSpec, report: Report = lambda **_: None) -> dict:
    """Run the job; return (and write as ``<job>/result.json``, with ``<job>/table.md``) the
    result: whether the new bundle was accepted, its version folder's name, and the guard's
    table. It holds no path: the server shows it to clients."""
    from medmoe.utils.device import resolve_device
    from medmoe.utils.seed import seed_everything

    job, cfg = Path(spec.job_dir), spec.config
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    report(stage="load")
    serving = _Serving(Path(spec.bundle), device)
    plan = plan_job(
        list(spec.cases), spec.request, serving.labels,
        fraction=cfg.holdout_fraction, seed=cfg.seed,
    )  # fmt: skip
    report(stage="crops", train_scans=len(plan.train), held_scans=len(plan.held))
    kw = {"serving": serving, "plan": plan, "job": job, "config": cfg, "device": device}
    train = _crops(plan.train, part="labels", **kw)
    held = _crops(plan.held, part="held_labels", **kw)
    if train is None:
        raise InputError("the training scans gave no usable crop")
    report(stage="expert", crops=len(train), held_crops=len(held) if held else 0)
    decoder = _train_expert(spec, serving, train, plan, job, device)
    report(stage="gate")
    moe, train_report = _train_gate(spec, serving, decoder, train, plan, job, device)
    report(stage="guard")
    decision = _guard(spec, serving, moe, held, plan, device)
    where = _write(spec, serving, moe, train_report, decision, job)
    result = {
        "accepted": decision.accepted,
        "version": where.name if decision.accepted else None,  # a folder name, never a path
        "experts": list(plan.experts),
        "tau": moe.tau,
        "guard": decision.to_dict(),
        "table": decision.table(),
    }
    with atomic_write(job / "table.md") as tmp:
        tmp.write_text(decision.table(), encoding="utf-8")
    with atomic_write(job / "result.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    shutil.rmtree(job / "cache", ignore_errors=True)
    report(stage="done", accepted=decision.accepted)
    return result
