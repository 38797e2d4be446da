"""``medmoe demo``: SAM-Med3D-MoE's weak-category experiment end to end, on two real brains, on a
CPU.

Stages (each writes an artifact under the output folder and is skipped when it exists):
crops (Subject A) -> general (a `tiny` SAM-Med3D pretrained on the other structures and a few
crops of the weak ones) -> experts (one per group, finetuned from the general decoder) -> moe
(gate trained with clicks, τ chosen on Subject A's validation crops) -> eval A (held-out crops)
-> eval B (the second brain) -> report.md + figure.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

from medmoe.demo.config import FULL, QUICK, DemoConfig
from medmoe.demo.crops import Crop
from medmoe.errors import InputError
from medmoe.utils.files import atomic_write, file_sha256


class TrainCrops(NamedTuple):
    pretrain: list[Crop]  # other structures + the first crops of the weak ones
    by_task: dict[int, list[Crop]]  # 0: other; i: group i (Subject A training + validation)


def _check_config(out: Path, cfg: DemoConfig) -> None:
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("digest") != cfg.digest():
            raise InputError(
                f"{out} holds a demo run with another configuration; use another --out or delete it"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"digest": cfg.digest(), **cfg.to_dict()}, indent=2))


class Timer:
    """Stage timings (wall clock and this process's CPU time: on a machine shared with other
    jobs the CPU time is what the stage would take alone, per thread) and the 1-minute load
    average at each stage's end, kept in
    ``timings.json``: a stage that finds its artifact cached keeps what was measured when it
    ran, so a re-run's report still shows what each stage cost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.timings: dict[str, float] = saved.get("seconds", {})
        self.loads: dict[str, float] = saved.get("load", {})
        self.cpu: dict[str, float] = saved.get("cpu", {})

    @contextmanager
    def __call__(self, name: str, *, cached: bool = False):
        start, cpu = time.perf_counter(), time.process_time()
        print(f"[demo] {name} ...", flush=True)
        yield
        if not (cached and name in self.timings):
            self.timings[name] = time.perf_counter() - start
            self.cpu[name] = time.process_time() - cpu  # all threads of this process
            self.loads[name] = os.getloadavg()[0]
            record = {"seconds": self.timings, "cpu": self.cpu, "load": self.loads}
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps(record, indent=1))
        print(f"[demo] {name}: {self.timings[name]:.1f} s", flush=True)


def _jobs(cfg: DemoConfig, count: int) -> list[tuple[int, int, int]]:
    """``(value, index, task)`` for ``count`` crops of every structure."""
    return [(v, i, cfg.task_of(v)) for v in cfg.values for i in range(count)]


def _subject(name: str, cfg: DemoConfig):
    from medmoe.data.atlas import load_subject

    atlas = load_subject(name)
    missing = [v for v in cfg.values if not (atlas.labels.array == v).any()]
    if missing:
        raise InputError(f"labels {missing} are not in Subject {name}'s label map")
    return atlas


def build_train_crops(cfg: DemoConfig, out: Path, atlas) -> TrainCrops:
    from medmoe.demo.crops import make_crops

    crops = make_crops(
        atlas, _jobs(cfg, cfg.train_crops), subject="A", split="train",
        jitter_mm=cfg.jitter_mm, cache_dir=out / "crops", seed=cfg.seed,
    )  # fmt: skip
    by_task: dict[int, list[Crop]] = {}
    for c in crops:
        by_task.setdefault(c.task, []).append(c)
    weak = {v for g in cfg.groups if g.kind == "weak" for v in g.values}
    jobs = _jobs(cfg, cfg.train_crops)
    pretrain = [
        c
        for c, (v, i, task) in zip(crops, jobs, strict=True)
        if task == 0 or (v in weak and i < cfg.weak_pretrain_crops)
    ]
    return TrainCrops(pretrain, by_task)


def eval_crops(cfg: DemoConfig, out: Path, subject: str, atlas) -> list[Crop]:
    from medmoe.demo.crops import make_crops

    count = cfg.eval_crops_a if subject == "A" else cfg.eval_crops_b
    return make_crops(
        atlas, _jobs(cfg, count), subject=subject, split="eval", jitter_mm=cfg.jitter_mm,
        cache_dir=out / "crops", seed=cfg.seed,
    )  # fmt: skip


def pretrain(cfg: DemoConfig, out: Path, crops: list[Crop], device) -> Path:
    from medmoe.demo.pretrain import pretrain_general
    from medmoe.sam3d import save_sam3d_checkpoint

    path = out / "general.pth"
    if not path.is_file():
        model, losses = pretrain_general(
            crops, steps=cfg.pretrain_steps, lr=cfg.pretrain_lr, clicks=cfg.pretrain_clicks,
            box_prob=cfg.box_prob, seed=cfg.seed, run_dir=out / "general_checkpoints",
            device=device,
        )  # fmt: skip
        with atomic_write(out / "general_loss.json") as tmp:
            tmp.write_text(json.dumps(losses))
        save_sam3d_checkpoint(model.cpu(), path)
    return path


def finetune_experts(cfg, out: Path, base, sha: str, cache, crops: TrainCrops, device) -> dict:
    """One expert per group, finetuned from the general decoder on the group's crops."""
    from medmoe.moe import ExpertTrainConfig, prepare_crops, train_expert

    dirs = {}
    for i, g in enumerate(cfg.groups, start=1):
        dirs[g.name] = out / "experts" / g.name
        if (dirs[g.name] / "expert.json").is_file():
            continue
        train_expert(
            base=base, base_sha256=sha, data=prepare_crops(crops.by_task[i], cache=cache),
            name=g.name, labels=sorted({c.name for c in crops.by_task[i]}), out_dir=dirs[g.name],
            config=ExpertTrainConfig(
                epochs=cfg.expert_epochs, lr=cfg.expert_lr, clicks=cfg.expert_clicks,
                batch_size=cfg.expert_batch, box_prob=cfg.box_prob, seed=cfg.seed,
            ),
            resume=True, device=device,
        )  # fmt: skip
    return dirs


def train_gate(cfg, out: Path, base, sha: str, cache, crops: TrainCrops, expert_dirs, device):
    """The gate over every training crop, experts frozen; τ chosen on the validation split."""
    from medmoe.moe import MoETrainConfig, load_expert, load_moe_bundle, prepare_crops, train_moe

    moe_dir = out / "moe"
    if not (moe_dir / "moe.json").is_file():
        experts = {
            name: load_expert(d, base_sha256=sha, config=base.config)[0]
            for name, d in expert_dirs.items()
        }
        samples = [c for task in sorted(crops.by_task) for c in crops.by_task[task]]
        train_moe(
            base=base, base_sha256=sha, experts=experts,
            data=prepare_crops(samples, cache=cache), out_dir=moe_dir,
            config=MoETrainConfig(
                epochs=cfg.gate_epochs, lr_gate=cfg.gate_lr, clicks=cfg.gate_clicks,
                batch_size=cfg.gate_batch, box_prob=cfg.box_prob, seed=cfg.seed,
                warmup_epochs=cfg.gate_warmup_epochs, balance_classes=cfg.gate_balance,
            ),
            resume=True, base_checkpoint=out / "general.pth", expert_dirs=expert_dirs,
            device=device,
        )  # fmt: skip
    return load_moe_bundle(moe_dir)


def evaluate_subject(cfg: DemoConfig, out: Path, moe, subject: str, atlas) -> list[dict]:
    from medmoe.demo.evaluate import evaluate

    path = out / f"eval_{subject}.json"
    if path.is_file():
        return _current_method_names(json.loads(path.read_text()))
    crops = eval_crops(cfg, out, subject, atlas)
    rows = evaluate(
        moe, crops, groups=len(cfg.groups), taus=cfg.taus, clicks=cfg.eval_clicks,
        seed=cfg.seed, nsd_mm=cfg.nsd_mm, desc=f"evaluate {subject}",
    )  # fmt: skip
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(rows))
    return rows


def _current_method_names(rows: list[dict]) -> list[dict]:
    """Rows cached before the Aft_weight rows took the library's weighting name: ``aft|τ`` and
    ``oracle|aft`` become ``logit-softmax|τ`` and ``oracle|logit-softmax`` (the same function)."""
    for row in rows:
        parts = ["logit-softmax" if p == "aft" else p for p in row["method"].split("|")]
        row["method"] = "|".join(parts)
    return rows


def _training_summary(out: Path, cfg: DemoConfig) -> dict:
    experts = {
        g.name: json.loads((out / "experts" / g.name / "expert.json").read_text()).get("val_dice")
        for g in cfg.groups
    }
    moe = json.loads((out / "moe" / "moe.json").read_text())
    report = moe.get("train_report", {})
    return {
        "expert validation Dice (1 centre click)": experts,
        "gate routing accuracy (validation)": report.get("routing_accuracy"),
        "tau": report.get("tau"),
        "tau scores": report.get("tau_scores"),
    }


def _machine() -> str:
    return f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads"


def run_mri_demo(
    *,
    quick: bool = False,
    out_dir: Path | str = Path("runs/demo"),
    config: DemoConfig | None = None,
    device: str = "auto",
) -> Path:
    from medmoe.demo.figure import bar_chart
    from medmoe.demo.report import RunRecord, write_report
    from medmoe.demo.results import demo_results
    from medmoe.eval.subject_overlap import subject_overlap
    from medmoe.moe import EmbeddingCache
    from medmoe.sam3d import load_sam3d
    from medmoe.utils.device import resolve_device
    from medmoe.utils.seed import seed_everything

    cfg = config or (QUICK if quick else FULL)
    out = Path(out_dir)
    _check_config(out, cfg)
    seed_everything(cfg.seed)
    timer = Timer(out / "timings.json")
    with timer("crops (Subject A)", cached=(out / "general.pth").is_file()):
        atlas_a = _subject("A", cfg)
        crops = build_train_crops(cfg, out, atlas_a)
    with timer("pretrain general", cached=(out / "general.pth").is_file()):
        general = pretrain(cfg, out, crops.pretrain, device)
    base, sha = load_sam3d(general), file_sha256(general)
    cache = EmbeddingCache(root=out / "cache", base_sha256=sha, encoder=base.image_encoder)
    done = all((out / "experts" / g.name / "expert.json").is_file() for g in cfg.groups)
    with timer("finetune experts", cached=done):
        expert_dirs = finetune_experts(cfg, out, base, sha, cache, crops, device)
    with timer("train gate", cached=(out / "moe" / "moe.json").is_file()):
        moe = train_gate(cfg, out, base, sha, cache, crops, expert_dirs, device)
        moe = moe.to(resolve_device(device))  # the evaluation runs where the training ran
    with timer("evaluate A", cached=(out / "eval_A.json").is_file()):
        rows = evaluate_subject(cfg, out, moe, "A", atlas_a)
    with timer("evaluate B", cached=(out / "eval_B.json").is_file()):
        atlas_b = _subject("B", cfg)
        rows += evaluate_subject(cfg, out, moe, "B", atlas_b)
    with timer("subject overlap"):
        overlap = subject_overlap(atlas_a, atlas_b, cfg.values)
    results = demo_results(rows, cfg=cfg, names=atlas_a.names, tau=moe.tau, overlap=overlap)
    figure = bar_chart(results.b, out / "dice_per_structure.png")
    record = RunRecord(
        training=_training_summary(out, cfg), timings=timer.timings, cpu=timer.cpu,
        loads=timer.loads, machine=_machine(), config_text=json.dumps(cfg.to_dict(), indent=1),
    )  # fmt: skip
    report = write_report(out / "report.md", results=results, run=record, figures=[figure])
    _print_summary(report)
    return report


def _print_summary(report: Path) -> None:
    from medmoe.demo.readme_block import block

    print(block(report.read_text(), source=str(report)))
    print(f"report: {report}")
