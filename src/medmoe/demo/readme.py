"""Copy the demo report's summary into the README, so that no figure there is typed by hand.

The report (``docs/figures/demo/report.md``, a copy of ``runs/demo/report.md``) and the README
both hold a block between :data:`~medmoe.demo.report.README_START` and
:data:`~medmoe.demo.report.README_END`. ``python -m medmoe.demo.readme`` replaces the README's
block by the report's; ``--check`` only says whether they are equal (exit 1 if not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medmoe.demo.report import README_END, README_START
from medmoe.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / "docs" / "figures" / "demo" / "report.md"
README = ROOT / "README.md"


def block(text: str, *, source: str) -> str:
    """The text between the markers (exclusive)."""
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise InputError(f"{source} must hold exactly one {README_START} ... {README_END} block")
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    if end < start:
        raise InputError(f"{source}: {README_END} comes before {README_START}")
    return text[start:end]


def synced(readme: str, report: str) -> str:
    """``readme`` with its block replaced by the report's."""
    new = block(report, source="the report")
    old = block(readme, source="the README")
    return readme.replace(README_START + old + README_END, README_START + new + README_END)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if they differ")
    args = p.parse_args(argv)
    readme, report = args.readme.read_text(), args.report.read_text()
    new = synced(readme, report)
    if args.check:
        same = new == readme
        print("README demo block matches the report" if same else "README demo block differs")
        return 0 if same else 1
    if new != readme:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
