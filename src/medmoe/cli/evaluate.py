"""``medmoe evaluate``: an interactive protocol over a dataset -> CSV + summary table.

``--protocol clicks`` (default) scores Dice, NSD and HD95 at the ``--clicks`` counts;
``--protocol cvpr25`` runs the CVPR 2025 interactive challenge's box + 5 clicks and reports
DSC_AUC, NSD_AUC, the final DSC and NSD, and the time per case (:mod:`medmoe.eval.cvpr25`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, add_seed_arg, load_predictor, positive_float
from medmoe.utils.device import add_device_arg

DEFAULT_CLICKS = [1, 3, 5, 10]


def _clicks(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--clicks {text!r}: expected numbers like 1,3,5"
        ) from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("--clicks values must be >= 1")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="interactive evaluation over a dataset (Dice, NSD, HD95)")
    p.add_argument("--dataset", type=Path, required=True, help="nnU-Net v2 raw or SAM-Med3D layout")
    add_model_args(p)
    p.add_argument("--labels", nargs="*", help="label names or values (default: all)")
    p.add_argument(
        "--protocol", choices=("clicks", "cvpr25"), default="clicks",
        help="clicks: Dice/NSD/HD95 at the --clicks counts (default); cvpr25: the CVPR 2025 "
        "interactive challenge (optional box, 5 center-of-error clicks, DSC_AUC/NSD_AUC, time)",
    )  # fmt: skip
    p.add_argument(
        "--prompt", choices=("points", "box"), default="points",
        help="points: clicks placed in the error region, one at a time; box: a bounding box "
        "first (under cvpr25, followed by the 5 clicks)",
    )  # fmt: skip
    p.add_argument(
        "--clicks", type=_clicks, default=None,
        help="the click counts at which each target is scored (default 1,3,5,10; "
        "not with --protocol cvpr25, whose 5 clicks are fixed)",
    )  # fmt: skip
    p.add_argument(
        "--click-method", choices=("random", "center"), default=None,
        help="where in the error region a click goes: a random voxel (default), or its center "
        "(not with --protocol cvpr25, which uses the challenge's own rule)",
    )  # fmt: skip
    p.add_argument("--tolerance-mm", type=positive_float, default=2.0, help="NSD tolerance")
    add_seed_arg(p, help="seed of the random clicks")
    p.add_argument("--out", type=Path, required=True, help="results CSV")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmoe.data import find_targets
    from medmoe.errors import InputError

    if args.protocol == "cvpr25":
        given = [
            o for o, v in (("--clicks", args.clicks), ("--click-method", args.click_method)) if v
        ]
        if given:
            raise InputError(
                f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to "
                "--protocol cvpr25 (its 5 clicks are fixed)"
            )
    targets = find_targets(args.dataset, labels=args.labels)
    predictor = load_predictor(args)
    if args.protocol == "cvpr25":
        return _run_cvpr25(args, predictor, targets)
    from medmoe.eval import evaluate_targets, format_table, summarize

    clicks = args.clicks or DEFAULT_CLICKS
    rows = evaluate_targets(
        predictor,
        targets,
        prompt=args.prompt,
        clicks=clicks,
        method=args.click_method or "random",
        seed=args.seed,
        tolerance_mm=args.tolerance_mm,
    )
    _write_csv(args.out, rows)
    print(format_table(summarize(rows, clicks), clicks))
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


def _run_cvpr25(args: argparse.Namespace, predictor, targets) -> int:
    from medmoe.eval.cvpr25 import (
        budget_lines,
        evaluate_cvpr25,
        format_cvpr25_table,
        summarize_cvpr25,
    )

    rows = evaluate_cvpr25(predictor, targets, prompt=args.prompt, tolerance_mm=args.tolerance_mm)
    _write_csv(args.out, rows)
    print(format_cvpr25_table(summarize_cvpr25(rows)))
    print("\n".join(budget_lines(rows)))
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    from medmoe.utils import atomic_write

    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as tmp:
        tmp.write_text(buf.getvalue())
