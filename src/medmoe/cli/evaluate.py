"""``medmoe evaluate``: an interactive protocol over a dataset -> CSV + summary table.

``--protocol clicks`` (default) scores Dice, NSD and HD95 at the ``--clicks`` counts;
``--protocol cvpr25`` runs the CVPR 2025 interactive challenge's box + 5 clicks and reports
DSC_AUC, NSD_AUC, the final DSC and NSD, and the time per case (:mod:`medmoe.eval.cvpr25`);
``--moe BUNDLE --groups GROUPS.json`` writes the MoE paper's Table 1 / Table 2 analogues as
markdown and JSON (:mod:`medmoe.eval.moe_groups`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import (
    add_model_args,
    add_seed_arg,
    load_predictor,
    positive_float,
    tau_value,
)
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


def _taus(text: str) -> list[float]:
    try:
        values = sorted({tau_value(v) for v in text.split(",") if v.strip()})
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"--taus {text!r}: expected numbers in [0, 1) like 0.3,0.5,0.7"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("--taus: expected at least one value")
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
        "--prompt", choices=("points", "box"), default=None,
        help="points (default): clicks placed in the error region, one at a time; box: a "
        "bounding box first (under cvpr25, followed by the 5 clicks); not with --groups",
    )  # fmt: skip
    p.add_argument(
        "--clicks", type=_clicks, default=None,
        help="the click counts at which each target is scored (default 1,3,5,10; not with "
        "--protocol cvpr25, whose 5 clicks are fixed); with --groups one number, the clicks "
        "of each points run (default 6)",
    )  # fmt: skip
    p.add_argument(
        "--click-method", choices=("random", "center"), default=None,
        help="where in the error region a click goes: a random voxel (default), or its center "
        "(not with --protocol cvpr25, which uses the challenge's own rule, nor --groups)",
    )  # fmt: skip
    p.add_argument(
        "--groups", type=Path, default=None,
        help="with --moe: a JSON file mapping each expert to its label values; writes Table 1 "
        "(Baseline / FT-expert / MoE) and Table 2 (τ x weighting) as markdown (--out) and JSON",
    )  # fmt: skip
    p.add_argument(
        "--taus", type=_taus, default=None,
        help="with --groups: Table 2's τ values (default 0.3,0.5,0.7)",
    )  # fmt: skip
    p.add_argument("--tolerance-mm", type=positive_float, default=2.0, help="NSD tolerance")
    add_seed_arg(p, help="seed of the random clicks (and of the bootstrap under --groups)")
    p.add_argument(
        "--out", type=Path, required=True,
        help="results CSV; with --groups the markdown report (its JSON goes beside it)",
    )  # fmt: skip
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmoe.data import find_targets

    _check_combination(args)
    targets = find_targets(args.dataset, labels=args.labels)
    if args.groups is not None:
        return _run_groups(args, targets)
    predictor = load_predictor(args)
    if args.protocol == "cvpr25":
        return _run_cvpr25(args, predictor, targets)
    from medmoe.eval import evaluate_targets, format_table, summarize

    clicks = args.clicks or DEFAULT_CLICKS
    rows = evaluate_targets(
        predictor,
        targets,
        prompt=args.prompt or "points",
        clicks=clicks,
        method=args.click_method or "random",
        seed=args.seed,
        tolerance_mm=args.tolerance_mm,
    )
    _write_csv(args.out, rows)
    print(format_table(summarize(rows, clicks), clicks))
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


def _check_combination(args: argparse.Namespace) -> None:
    """Options that do not fit the chosen protocol, refused in one line."""
    from medmoe.errors import InputError

    def given(*names: str) -> list[str]:
        return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None]

    def refuse(options: list[str], where: str) -> None:
        if options:
            verb = "does" if len(options) == 1 else "do"
            raise InputError(f"{' and '.join(options)} {verb} not apply to {where}")

    if args.groups is not None:
        if args.moe is None:
            raise InputError("--groups needs --moe BUNDLE (the experts the groups name)")
        if args.protocol != "clicks":
            raise InputError("--groups runs its own protocol; leave out --protocol")
        refuse(given("prompt", "click_method"), "--groups (it runs points and box)")
        if args.clicks is not None and len(args.clicks) != 1:
            raise InputError("with --groups, --clicks is one number: the clicks of a points run")
        if args.out.suffix == ".json":
            raise InputError("with --groups, --out names the markdown report (the JSON is beside)")
        return
    refuse(given("taus"), "an evaluation without --groups")
    if args.protocol == "cvpr25":
        refuse(given("clicks", "click_method"), "--protocol cvpr25 (its 5 clicks are fixed)")


def _run_groups(args: argparse.Namespace, targets) -> int:
    from medmoe.eval.moe_groups import DEFAULT_CLICKS as GROUP_CLICKS
    from medmoe.eval.moe_groups import evaluate_groups, read_groups
    from medmoe.eval.moe_report import render_markdown, results_json
    from medmoe.eval.moe_tables import DEFAULT_TAUS
    from medmoe.moe import load_moe_bundle
    from medmoe.utils import atomic_write
    from medmoe.utils.device import resolve_device

    groups = read_groups(args.groups)
    moe = load_moe_bundle(args.moe).to(resolve_device(args.device))
    subject = args.dataset.resolve().name
    rows, results, spec = evaluate_groups(
        moe,
        targets,
        groups,
        subject=subject,
        taus=args.taus or DEFAULT_TAUS,
        clicks=args.clicks[0] if args.clicks else GROUP_CLICKS,
        seed=args.seed,
        nsd_mm=args.tolerance_mm,
    )
    markdown = render_markdown(results, spec, title=f"{args.moe.resolve().name} on {subject}")
    json_path = args.out.with_suffix(".json")
    with atomic_write(args.out) as tmp:
        tmp.write_text(markdown)
    with atomic_write(json_path) as tmp:
        tmp.write_text(results_json(results, spec, rows))
    print(markdown)
    print(f"wrote {args.out} and {json_path} ({len(rows)} rows)")
    return 0


def _run_cvpr25(args: argparse.Namespace, predictor, targets) -> int:
    from medmoe.eval.cvpr25 import (
        budget_lines,
        evaluate_cvpr25,
        format_cvpr25_table,
        summarize_cvpr25,
    )

    prompt = args.prompt or "points"
    rows = evaluate_cvpr25(predictor, targets, prompt=prompt, tolerance_mm=args.tolerance_mm)
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
