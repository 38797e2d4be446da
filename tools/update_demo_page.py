"""Copy the demo report's summary block into docs/demo.md, so that no figure there is typed by hand.

A tool of the source checkout (it rewrites this repository's docs/demo.md), not of the package.
The report (by default ``docs/figures/demo/report.md``, the committed copy of a run's
``runs/demo/report.md``) and docs/demo.md both hold a block between
:data:`~medmoe.demo.readme_block.README_START` and :data:`~medmoe.demo.readme_block.README_END`.

    python tools/update_demo_page.py [REPORT]   # REPORT: a report.md, or a demo's --out folder
    python tools/update_demo_page.py --check    # only say whether they are equal (exit 1 if not)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medmoe.demo.readme_block import synced

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "figures" / "demo" / "report.md"
PAGE = ROOT / "docs" / "demo.md"


def report_file(path: Path) -> Path:
    """``path``, or the ``report.md`` in it when it is a folder (a demo's output folder)."""
    return path / "report.md" if path.is_dir() else path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "report", nargs="?", type=Path, default=REPORT, help=f"default: {REPORT.relative_to(ROOT)}"
    )
    p.add_argument("--page", type=Path, default=PAGE, help="default: docs/demo.md")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if they differ")
    args = p.parse_args(argv)
    page, report = args.page.read_text(), report_file(args.report).read_text()
    new = synced(page, report)
    if args.check:
        same = new == page
        print("docs/demo.md's block matches the report" if same else "docs/demo.md's block differs")
        return 0 if same else 1
    if new != page:
        args.page.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
