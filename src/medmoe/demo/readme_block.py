"""The block of the demo report that docs/demo.md shows, between :data:`README_START` and
:data:`README_END` (names and markers kept from when the README showed it, so old reports
still sync): finding it in a text and replacing the page's copy by the report's.

``tools/update_demo_page.py`` (in a source checkout) rewrites docs/demo.md with :func:`synced`;
``tests/demo/test_demo_page_tables.py`` checks that the two blocks are equal.
"""

from __future__ import annotations

from medmoe.errors import InputError

README_START = "<!-- demo-readme:start -->"
README_END = "<!-- demo-readme:end -->"


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
