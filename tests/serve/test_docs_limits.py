"""docs/viewer.md's table of server limits states the defaults ``medmoe serve`` really has."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from medmoe.cli import serve as serve_cli
from medmoe.serve.auth import LoginLimits
from medmoe.serve.jsonlimits import MAX_DEPTH, MAX_NUMBER_CHARS
from medmoe.serve.session import MAX_POINTS, MAX_STEPS

README = Path(__file__).resolve().parents[2] / "docs" / "viewer.md"


def _serve_defaults() -> dict[str, object]:
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["serve"]
    return {a.option_strings[0]: a.default for a in sub._actions if a.option_strings}


def test_the_limits_table_matches_the_defaults():
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(--[a-z-]+)`: [^|]+\| ([0-9]+) \|", text, flags=re.M)
    assert len(rows) == 6, rows
    defaults = _serve_defaults()
    for flag, value in rows:
        assert float(defaults[flag]) == float(value), flag
    caps = re.search(r"^\| points per object; [^|]+\| ([0-9; ]+) \| 400 \|", text, flags=re.M)
    assert [int(v) for v in caps.group(1).split(";")] == [
        MAX_POINTS,
        MAX_STEPS,
        MAX_DEPTH,
        MAX_NUMBER_CHARS,
    ]
    logins = re.search(
        r"^\| failed logins per client, overall [^|]+\| ([0-9]+), ([0-9]+) \|", text, flags=re.M
    )
    limits = LoginLimits()
    assert (int(logins.group(1)), int(logins.group(2))) == (limits.per_client, limits.overall)
    assert limits.window_s == 60
