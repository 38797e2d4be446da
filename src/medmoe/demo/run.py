"""``medmoe demo``: the SAM-Med3D-MoE experiment end to end, on real MRI, on a CPU.

Stages (each writes an artifact under the output folder and is skipped when it exists):
crops -> general (pretrained tiny SAM-Med3D) -> expert (FT on the new task) -> moe (gate, auto
tau) -> eval (Baseline / FT-expert / MoE, points and box, ablations) -> report.md + figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from medmoe.demo.config import FULL, QUICK, DemoConfig
from medmoe.errors import InputError
from medmoe.utils.files import atomic_write, file_sha256


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


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()
                print(f"[demo] {name} ...", flush=True)

            def __exit__(self, *exc):
                timer.timings[name] = time.perf_counter() - self.t
                print(f"[demo] {name}: {timer.timings[name]:.1f} s", flush=True)

        return _Ctx()


def run_mri_demo(
    *,
    quick: bool = False,
    out_dir: Path | str = Path("runs/demo"),
    config: DemoConfig | None = None,
) -> Path:
    from medmoe.data.atlas import load_atlas
    from medmoe.demo.crops import make_crops
    from medmoe.demo.evaluate import evaluate, mean_dice, routing_accuracy
    from medmoe.demo.pretrain import pretrain_general
    from medmoe.demo.report import bar_chart, overlays, write_report
    from medmoe.moe import (
        EmbeddingCache,
        ExpertTrainConfig,
        MoEPredictor,
        MoETrainConfig,
        load_expert,
        load_moe_bundle,
        train_expert,
        train_moe,
    )
    from medmoe.sam3d import Sam3D, Sam3DPredictor, load_sam3d, save_sam3d_checkpoint
    from medmoe.utils.seed import seed_everything

    cfg = config or (QUICK if quick else FULL)
    out = Path(out_dir)
    _check_config(out, cfg)
    seed_everything(cfg.seed)
    timer = _Timer()
    atlas = load_atlas(cfg.atlas)
    missing = [v for v in cfg.original + cfg.new if not (atlas.labels.array == v).any()]
    if missing:
        raise InputError(f"labels {missing} are not in the {cfg.atlas} atlas")

    with timer("crops"):
        crops = {
            (split, task): make_crops(
                atlas,
                values,
                split=split,
                count=count,
                task=task,
                elastic=cfg.elastic,
                cache_dir=out / "crops",
                seed=cfg.seed,
            )
            for split, count in (("train", cfg.train_crops), ("eval", cfg.eval_crops))
            for task, values in ((0, cfg.original), (1, cfg.new))
        }
        orig_train, new_train = crops["train", 0], crops["train", 1]
        evals = crops["eval", 0] + crops["eval", 1]

    general_path = out / "general.pth"
    with timer("pretrain general"):
        if not general_path.is_file():
            model, losses = pretrain_general(
                orig_train,
                steps=cfg.pretrain_steps,
                lr=cfg.pretrain_lr,
                clicks=cfg.pretrain_clicks,
                box_prob=cfg.box_prob,
                seed=cfg.seed,
            )
            with atomic_write(out / "general_loss.json") as tmp:
                tmp.write_text(json.dumps(losses))
            save_sam3d_checkpoint(model, general_path)
    base = load_sam3d(general_path)
    sha = file_sha256(general_path)
    cache = EmbeddingCache(root=out / "cache", base_sha256=sha, encoder=base.image_encoder)

    expert_dir = out / "experts" / cfg.new_name
    with timer("finetune expert"):
        if not (expert_dir / "expert.json").is_file():
            train_expert(
                base=base,
                base_sha256=sha,
                samples=new_train,
                name=cfg.new_name,
                labels=sorted({s.name for s in new_train}),
                out_dir=expert_dir,
                cache=cache,
                config=ExpertTrainConfig(
                    epochs=cfg.expert_epochs,
                    lr=cfg.expert_lr,
                    clicks=cfg.expert_clicks,
                    box_prob=cfg.box_prob,
                    seed=cfg.seed,
                ),
                resume=True,
            )
    expert, _ = load_expert(expert_dir, base_sha256=sha, config=base.config)

    moe_dir = out / "moe"
    with timer("train gate"):
        if not (moe_dir / "moe.json").is_file():
            train_moe(
                base=base,
                base_sha256=sha,
                experts={cfg.new_name: expert},
                samples=orig_train + new_train,
                out_dir=moe_dir,
                cache=cache,
                config=MoETrainConfig(
                    epochs=cfg.gate_epochs,
                    lr_gate=cfg.gate_lr,
                    clicks=1,
                    box_prob=cfg.box_prob,
                    seed=cfg.seed,
                ),
                resume=True,
                base_checkpoint=general_path,
                expert_dirs={cfg.new_name: expert_dir},
            )
    moe = load_moe_bundle(moe_dir)
    tau = moe.tau

    eval_path = out / "eval.json"
    variants = {
        "τ=0.5": {"tau": 0.5, "weighting": "s_top", "label": "0.5"},
        "τ=0.7": {"tau": 0.7, "weighting": "s_top", "label": "0.7"},
        "τ=auto": {"tau": tau, "weighting": "s_top", "label": f"auto ({tau:.2f})"},
        "avg": {"tau": tau, "weighting": "avg", "label": f"auto ({tau:.2f})"},
        "softmax": {"tau": tau, "weighting": "softmax", "label": f"auto ({tau:.2f})"},
    }
    show = {0, next(i for i, s in enumerate(evals) if s.task == 1)}
    with timer("evaluate"):
        ft = Sam3D(
            image_encoder=base.image_encoder,
            prompt_encoder=base.prompt_encoder,
            mask_decoder=expert,
            config=base.config,
        ).eval()
        predictors = {
            "Baseline": Sam3DPredictor(base),
            "FT-expert": Sam3DPredictor(ft),
            "MoE": MoEPredictor(moe),
        }
        rows, masks = evaluate(
            predictors,
            evals,
            encoder=Sam3DPredictor(base),
            clicks=cfg.eval_clicks,
            seed=cfg.seed,
            keep_masks_for=show,
            variants=variants,
        )
        with atomic_write(eval_path) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))

    figs_dir = out
    figures = [bar_chart(rows, figs_dir / "dice_per_structure.png")]
    for i in sorted(show):
        group = "new" if evals[i].task else "original"
        figures.append(overlays(evals[i], masks, i, figs_dir / f"overlay_{group}.png"))

    def pct(a: float, b: float) -> str:
        return f"{a / b:.1%}" if b > 0 else "n/a"

    checks = []
    for prompt in ("points", "box"):
        b0, f0, m0 = (
            mean_dice(rows, model=m, prompt=prompt, task=0)
            for m in ("Baseline", "FT-expert", "MoE")
        )
        f1, m1 = (mean_dice(rows, model=m, prompt=prompt, task=1) for m in ("FT-expert", "MoE"))
        checks += [
            f"{prompt}: FT-expert forgets: original Dice {f0:.3f} vs Baseline {b0:.3f} "
            f"(drop {b0 - f0:.3f}, target >= 0.10): {'PASS' if b0 - f0 >= 0.10 else 'MISS'}",
            f"{prompt}: MoE keeps {pct(m0, b0)} of the Baseline on the original tasks (target >= 95%): "
            f"{'PASS' if b0 > 0 and m0 >= 0.95 * b0 else 'MISS'}",
            f"{prompt}: MoE reaches {pct(m1, f1)} of the FT-expert on the new task (target >= 90%): "
            f"{'PASS' if f1 > 0 and m1 >= 0.90 * f1 else 'MISS'}",
        ]
    cfg_text = json.dumps(cfg.to_dict(), indent=1)
    report = write_report(
        out / "report.md",
        rows=rows,
        variants=variants,
        tau=tau,
        timings=timer.timings,
        figures=figures,
        cfg_text=cfg_text,
        checks=checks,
    )
    from medmoe.demo.report import table1, table2

    print()
    print(table1(rows))
    print()
    print(table2(rows, variants))
    print(f"\nrouting accuracy {routing_accuracy(rows):.1%}, tau {tau:.2f}")
    for c in checks:
        print(c)
    print(f"\nreport: {report}  (total {sum(timer.timings.values()):.0f} s)")
    return report
