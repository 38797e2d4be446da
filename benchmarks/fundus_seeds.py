"""Fundus: the multi-task MoE and both single-task baselines over several training seeds.

Usage: ``python benchmarks/fundus_seeds.py [--seeds 0 1 2] [--quick] [--threads 2]
[--out runs/fundus-seeds] [--results benchmarks/results/fundus_seeds_cpu]``

The demo's data (synthetic train / val / test, generator seeds 0 / 1 / 2), models and settings
(``medmoe demo fundus``, full preset); only the training seed changes (initialisation, batch
order, augmentation). Every metric on the **test** split as mean ± sample std (ddof 1) over the
seeds, in the report's Table 1 layout, and the "within 5 points" judgement made on the means,
saying where a std is larger than the gap. Writes ``<results>.json`` (every run) and
``<results>.md`` (the tables). Runs are resumable: a model already trained in
``<out>/seed<s>/model<i>`` (e.g. by ``medmoe demo fundus --out <out>/seed0``, which is seed 0
exactly) is loaded instead of trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def earlier_seconds(run_dir: Path, name: str) -> float | None:
    """The training time of a run finished before this invocation, where it was recorded."""
    if (run_dir / "seconds.json").is_file():
        return json.loads((run_dir / "seconds.json").read_text())["seconds"]
    demo = run_dir.parent / "results.json"  # medmoe demo fundus --out <out>/seed0
    if demo.is_file():
        return json.loads(demo.read_text()).get(name, {}).get("seconds")
    return None


def run_seed(seed: int, preset: dict, data: dict, out: Path) -> dict:
    from medmoe.demo.fundus import MODELS, train_demo_model
    from medmoe.multitask.evaluation.evaluate import evaluate_fundus

    runs = {}
    for i, (name, kw) in enumerate(MODELS.items()):
        run_dir = out / f"seed{seed}" / f"model{i}"
        last = run_dir / "checkpoints" / f"checkpoint_epoch{preset['epochs'] - 1:04d}.pt"
        finished = last.is_file()
        t = time.perf_counter()
        model, history = train_demo_model(
            preset=preset, model_kw=kw, train=data["train"], out_dir=run_dir, seed=seed
        )
        seconds = round(time.perf_counter() - t, 1)
        if finished:  # trained earlier: by this script, or by the demo (its results.json)
            seconds = earlier_seconds(run_dir, name)
        else:
            (run_dir / "seconds.json").write_text(json.dumps({"seconds": seconds}))
        runs[name] = {
            "test": evaluate_fundus(model, data["test"]),
            "val": evaluate_fundus(model, data["val"]),
            "seconds": seconds,
            "final_loss": history[-1]["loss"],
        }
        print(f"seed {seed} | {name}: {seconds} s", flush=True)
    return runs


def summarise(per_seed: dict, header: list[str]) -> list[str]:
    from medmoe.demo.fundus import MODELS, MOE_NAME
    from medmoe.multitask.evaluation.report import (
        comparison,
        mean_std,
        merge_baselines,
        table1,
        verdict_counts,
    )

    agg = {n: mean_std([per_seed[s][n]["test"] for s in per_seed]) for n in MODELS}
    checks = comparison(agg[MOE_NAME], merge_baselines(agg, MOE_NAME))
    lines = [*header, "", "## Test split, mean ± std over the training seeds", ""]
    lines += [
        *table1(agg),
        "",
        f"Multi-task vs single-task on the means: {verdict_counts(checks)}.",
    ]
    lines += ["", *[f"- {c}" for c in checks], "", "## Every run (test split)", ""]
    for s, runs in per_seed.items():
        lines += [f"### training seed {s}", "", *table1({n: r["test"] for n, r in runs.items()})]
        lines += [
            "",
            "training seconds: " + ", ".join(f"{n} {r['seconds']}" for n, r in runs.items()),
        ]
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="the demo's --quick preset (a check)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/fundus-seeds"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/fundus_seeds_cpu"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from medmoe.demo.fundus import PRESETS, demo_data

    preset = PRESETS["quick" if args.quick else "full"]
    start, load0 = time.perf_counter(), os.getloadavg()
    data = demo_data(preset)
    per_seed = {s: run_seed(s, preset, data, args.out) for s in args.seeds}
    minutes, load1 = (time.perf_counter() - start) / 60, os.getloadavg()
    trained = [r["seconds"] or 0.0 for runs in per_seed.values() for r in runs.values()]
    header = [
        f"# fundus_seeds: {'quick' if args.quick else 'full'} preset, training seeds {args.seeds}",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, threads={args.threads}, "
        f"torch {torch.__version__}; this invocation {minutes:.1f} min; load average (1 min) "
        f"{load0[0]:.1f} at its start, {load1[0]:.1f} at its end",
        "",
        f"training time of the {len(trained)} runs, as recorded when each was trained (wall, "
        f"s; runs trained before this invocation were loaded): {sum(trained):.0f} s in all",
    ]
    lines = summarise(per_seed, header)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".md").write_text("\n".join(lines))
    record = {"preset": {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()}}
    record.update(seeds=args.seeds, minutes=minutes, load=[load0, load1], runs=per_seed)
    args.results.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print("\n".join(lines[: lines.index("## Every run (test split)")]))


if __name__ == "__main__":
    main()
