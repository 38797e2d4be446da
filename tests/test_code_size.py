"""The house rules on size (style guide): no module in ``src/medmoe`` over 400 lines, no function
over 80.

A function's length is counted from its ``def`` line (decorators excluded) to its last line, so a
long docstring counts: a function whose explanation is that long should be split too. Nested
functions count inside their parent and on their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medmoe

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
SRC = Path(medmoe.__file__).parent


def function_lengths(source: str) -> dict[str, int]:
    """``qualified name -> lines`` for every (async) function in ``source``."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out[name] = child.end_lineno - child.lineno + 1
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return out


def test_function_lengths_counts_def_to_last_line():
    source = "@dec\ndef f(a):\n    x = 1\n\n    def g():\n        return 2\n    return x\n"
    assert function_lengths(source) == {"f": 6, "f.g": 2}
    assert function_lengths("class A:\n    def m(self):\n        pass\n") == {"A.m": 2}


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = {
        f"{p.relative_to(SRC)}:{name}": n
        for p in sorted(SRC.rglob("*.py"))
        for name, n in function_lengths(p.read_text()).items()
        if n > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
