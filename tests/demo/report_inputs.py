"""Fixed, seeded inputs for the demo report (tests/demo/test_report_golden.py): evaluation rows
shaped like :func:`medmoe.demo.evaluate.evaluate_crop`'s, for both subjects, every method and
prompt setting, and a fixed run record."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from medmoe.demo.config import FULL, DemoConfig
from medmoe.demo.evaluate import WEIGHTINGS

CONFIG = replace(FULL, bootstrap=200)  # fewer resamples than the demo's: the test stays fast
RUNS = (("points", "centre"), ("box", "centre"), ("points", "random"))
GOLDEN = Path(__file__).parent / "data" / "report_golden.md"


def methods(cfg: DemoConfig) -> list[str]:
    m = len(cfg.groups)
    names = ["Baseline", "MoE", *[f"FT:{i}" for i in range(1, m + 1)]]
    names += [f"{w}|{t}" for w in WEIGHTINGS for t in cfg.taus]
    return names + [f"oracle|{w}" for w in WEIGHTINGS]


def rows(cfg: DemoConfig = CONFIG, seed: int = 0) -> list[dict]:
    """Seeded rows: 1 crop per structure on A (none of the last group: its cells are n/a), 2 on
    B; Dice rounded to 4 places."""
    rng = np.random.default_rng(seed)
    m = len(cfg.groups)
    out = []
    for subject, per in (("A", 1), ("B", 2)):
        crop = 0
        for value in cfg.values:
            task = cfg.task_of(value)
            if subject == "A" and task == m:
                continue
            for _ in range(per):
                for prompt, first in RUNS:
                    for method in methods(cfg):
                        row = {
                            "subject": subject,
                            "crop": crop,
                            "name": f"structure_{value}",
                            "task": task,
                            "method": method,
                            "prompt": prompt,
                            "first": first,
                            "dice": round(float(rng.uniform(0.2, 0.95)), 4),
                            "gate": [int(rng.integers(0, m + 1)) for _ in range(2)],
                            "expert": [int(rng.integers(0, m + 1)) for _ in range(2)],
                        }
                        if method.split(":")[0] in ("Baseline", "FT", "MoE"):
                            row["nsd"] = round(float(rng.uniform(0.1, 0.9)), 4)
                        out.append(row)
                crop += 1
    return out


def names(cfg: DemoConfig = CONFIG) -> dict[int, str]:
    """Every structure but the last one named (the report falls back to the label value)."""
    return {v: f"structure_{v}" for v in cfg.values[:-1]}


TAU = 0.45
TRAINING = {
    "expert validation Dice (1 centre click)": {"pallidum": 0.61, "amygdala": 0.5, "gyri": None},
    "gate routing accuracy (validation)": 0.8125,
    "tau": TAU,
    "tau scores": {"0.4": 0.7, "0.45": 0.71},
}
TIMINGS = {"crops (Subject A)": 12.25, "pretrain general": 300.5, "evaluate B": 40.0}
CPU = {"crops (Subject A)": 20.0, "pretrain general": math.nan, "evaluate B": 70.5}
LOADS = {"crops (Subject A)": 1.5, "pretrain general": 2.25, "evaluate B": 1.0}
MACHINE = "2 CPUs, torch 2 threads"
FIGURES = [Path("/somewhere/dice_per_structure.png")]
CFG_TEXT = json.dumps(CONFIG.to_dict(), indent=1)
