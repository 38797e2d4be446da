"""The demo's figure: Dice per structure of Baseline, FT-expert and MoE (cf. the paper's Fig. 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medmoe.demo.results import SUBJECTS, SubjectResults


def bar_chart(res: SubjectResults, path: Path) -> Path:
    """One group of bars per structure (points, centre first click), written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(res.structures))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(res.structures)), 4))
    for k, (attr, label) in enumerate(
        (("baseline", "Baseline"), ("ft", "FT-expert"), ("moe", "MoE"))
    ):
        vals = [getattr(s, attr) for s in res.structures]
        ax.bar(x + (k - 1) * 0.27, vals, width=0.27, label=label)
    names = [s.name.replace("_", " ") for s in res.structures]
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("Dice (6 clicks)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"{SUBJECTS[res.subject]}: Dice per structure (cf. Fig. 4)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
