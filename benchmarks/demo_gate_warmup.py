"""How to train the MRI demo's gate, chosen on Subject A's validation crops.

Usage: ``python benchmarks/demo_gate_warmup.py --run DIR [--out runs/demo-gate]``

``DIR`` is a finished ``medmoe demo`` run: its general model, experts, crops and embedding
cache are reused, so only the gate is trained, once per setting, through the demo's own
``train_gate`` (the full config with the gate settings it had before this choice, ``BEFORE``,
and then the setting's fields replaced). Each gate is scored on the
validation split that the demo's τ choice uses (20 % of the Subject A training crops):
- the τ objective (the mean of the original- and new-task one-click Dice at the chosen τ);
- routing accuracy (gate argmax = the crop's group), per group and balanced.

Subject B and the evaluation crops are not read. The last line names the setting with the best
τ objective.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

# The gate settings the demo had before this choice (the paper's schedule, the CPU's learning
# rate); each setting below changes some of them.
BEFORE = {"gate_warmup_epochs": 0, "gate_balance": False, "gate_lr": 1e-3}
SETTINGS = {
    "paper schedule (click loop only)": {},
    "balanced cross-entropy": {"gate_balance": True},
    "warm-up 30 epochs, balanced": {"gate_warmup_epochs": 30, "gate_balance": True},
    "warm-up 30 epochs, balanced, lr 3e-4": {
        "gate_warmup_epochs": 30, "gate_balance": True, "gate_lr": 3e-4,
    },
}  # fmt: skip


def routing(moe, val, groups: int) -> dict:
    """Per-group and balanced routing accuracy of one centre click per validation crop."""
    from medmoe.moe.validate import moe_click

    hits = np.zeros((groups + 1, 2), int)  # [task] -> (right, all)
    for item in val:
        out = moe_click(moe, item, tau=moe.tau, device=torch.device("cpu"))
        hits[item["task"]] += (int(out.gate_probs[0].argmax()) == item["task"], 1)
    per = hits[:, 0] / np.maximum(hits[:, 1], 1)
    return {"per group": per.round(2).tolist(), "balanced": round(float(per.mean()), 3)}


def main() -> None:
    from medmoe.demo.config import FULL
    from medmoe.demo.run import _subject, build_train_crops, train_gate
    from medmoe.moe import EmbeddingCache, MoETrainConfig, prepare_crops
    from medmoe.moe.train import split
    from medmoe.sam3d import load_sam3d
    from medmoe.utils.files import file_sha256

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished `medmoe demo` folder")
    ap.add_argument("--out", type=Path, default=Path("runs/demo-gate"))
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = ap.parse_args()
    cfg, run = FULL, args.run
    crops = build_train_crops(cfg, run, _subject("A", cfg))
    general = run / "general.pth"
    base, sha = load_sam3d(general), file_sha256(general)
    cache = EmbeddingCache(root=run / "cache", base_sha256=sha, encoder=base.image_encoder)
    experts = {g.name: run / "experts" / g.name for g in cfg.groups}
    samples = [c for task in sorted(crops.by_task) for c in crops.by_task[task]]
    _, val = split(prepare_crops(samples, cache=cache), MoETrainConfig.val_fraction, cfg.seed)
    print(
        f"validation crops {len(val)}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.settings:
        setting = dataclasses.replace(cfg, **{**BEFORE, **SETTINGS[name]})
        out = args.out / name.replace(" ", "_").replace(",", "")
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "general.pth").exists():
            (out / "general.pth").symlink_to(general.resolve())
        t0 = time.perf_counter()
        moe = train_gate(setting, out, base, sha, cache, crops, experts, "cpu").eval()
        report = json.loads((out / "moe" / "moe.json").read_text())["train_report"]
        row = {
            "setting": name,
            "fields": SETTINGS[name],
            "seconds": round(time.perf_counter() - t0, 1),
            "tau": report["tau"],
            "tau objective": round(report["tau_scores"][str(float(report["tau"]))], 4),
            "routing accuracy": round(report["routing_accuracy"], 3),
            **{f"routing, {k}": v for k, v in routing(moe, val, len(cfg.groups)).items()},
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    best = max(rows, key=lambda r: r["tau objective"])
    print(f"best on Subject A validation: {best['setting']} ({best['tau objective']})")


if __name__ == "__main__":
    main()
