"""Every relative link in the README and docs/ resolves, anchors included, and the README stays
a front page (#26)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def test_slug_follows_github():
    assert slug("Use medmoe from 3D Slicer / OHIF") == "use-medmoe-from-3d-slicer--ohif"
    assert slug("SAM-Med3D runtime (`medmoe.sam3d`)") == "sam-med3d-runtime-medmoesam3d"


def test_the_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"README.md", "demo.md", "training.md", "fundus.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if (
            not dest.exists()
            or ROOT not in (dest, *dest.parents)
            or anchor
            and dest.suffix == ".md"
            and anchor not in anchors(dest)
        ):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "git show" not in text
    docs = {t for t in links(ROOT / "README.md") if t.startswith("docs/")}
    assert len(docs) >= 8  # a table of contents into docs/
