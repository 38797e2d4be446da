"""Versioned bundle folders: ``<root>/v0001``, ``<root>/v0002``, ... beside each other, never
overwritten; ``<root>/current.json`` names the one being served. A folder is written as
``vNNNN.part`` and renamed when complete, so a ``.part`` folder is only ever a job cut short
(:func:`clean_parts` removes them at start-up)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from medmoe.utils.files import atomic_write

VERSION = re.compile(r"^v(\d{4,})$")
CURRENT = "current.json"


def versions(root: Path) -> list[Path]:
    """The complete version folders, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and VERSION.match(p.name)]
    return sorted(found, key=lambda p: int(VERSION.match(p.name).group(1)))


def next_version(root: Path) -> Path:
    """The folder the next version goes to (one past every complete or partial one)."""
    numbers = [0]
    if root.is_dir():
        for p in root.iterdir():
            m = VERSION.match(p.name.removesuffix(".part"))
            if m:
                numbers.append(int(m.group(1)))
    return root / f"v{max(numbers) + 1:04d}"


def clean_parts(root: Path) -> list[str]:
    """Remove the ``.part`` folders of jobs cut short; their names."""
    gone = []
    if root.is_dir():
        for p in root.glob("v*.part"):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def write_current(root: Path, version: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with atomic_write(root / CURRENT) as tmp:
        tmp.write_text(json.dumps({"version": version.name}), encoding="utf-8")


def current_version(root: Path) -> Path | None:
    """The version ``current.json`` names, if it is a complete folder."""
    try:
        name = json.loads((root / CURRENT).read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = root / str(name)
    return path if VERSION.match(path.name) and (path / "moe.json").is_file() else None
