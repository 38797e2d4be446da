"""``medmoe evaluate``: the interactive protocol over a dataset -> CSV + summary table."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, add_seed_arg, load_predictor, positive_float
from medmoe.utils.device import add_device_arg


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
        "--prompt", choices=("points", "box"), default="points",
        help="points: clicks placed in the error region, one at a time; box: a bounding box",
    )  # fmt: skip
    p.add_argument(
        "--clicks", type=_clicks, default=[1, 3, 5, 10],
        help="the click counts at which each target is scored (default 1,3,5,10)",
    )  # fmt: skip
    p.add_argument(
        "--click-method", choices=("random", "center"), default="random",
        help="where in the error region a click goes: a random voxel, or its center",
    )  # fmt: skip
    p.add_argument("--tolerance-mm", type=positive_float, default=2.0, help="NSD tolerance")
    add_seed_arg(p, help="seed of the random clicks")
    p.add_argument("--out", type=Path, required=True, help="results CSV")
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import csv
    import io

    from medmoe.data import find_targets
    from medmoe.eval import evaluate_targets, format_table, summarize
    from medmoe.utils import atomic_write

    targets = find_targets(args.dataset, labels=args.labels)
    predictor = load_predictor(args)
    rows = evaluate_targets(
        predictor,
        targets,
        prompt=args.prompt,
        clicks=args.clicks,
        method=args.click_method,
        seed=args.seed,
        tolerance_mm=args.tolerance_mm,
    )
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(args.out) as tmp:
        tmp.write_text(buf.getvalue())
    print(format_table(summarize(rows, args.clicks), args.clicks))
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0
