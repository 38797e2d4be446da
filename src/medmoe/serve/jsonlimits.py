"""JSON from clients, parsed with limits on nesting and on the length of numbers.

``json.loads`` recurses once per nesting level (100,000 levels raise ``RecursionError``) and turns
an integer of 10,000 digits into a Python int that float conversion later rejects with
``OverflowError``: both would reach the server as a 500. Here the depth is counted first, by a
linear scan, and every number passes a length check, so bad JSON is one :class:`InputError`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from medmoe.errors import InputError

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32  # an integer or float literal longer than this is refused


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads(
    text: str | bytes, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
) -> Any:
    """``json.loads`` with limits; every failure is an :class:`InputError` naming the limit."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("JSON must be UTF-8") from None
    if json_depth(text) > max_depth:
        raise InputError(f"JSON nested deeper than {max_depth} levels is refused")

    def number(literal: str, kind):
        if len(literal) > max_number_chars:
            raise InputError(f"a JSON number longer than {max_number_chars} characters is refused")
        value = kind(literal)
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError("JSON numbers must be finite")
        return value

    def constant(name: str):
        raise InputError("NaN and Infinity are not JSON")

    try:
        return json.loads(
            text,
            parse_int=lambda s: number(s, int),
            parse_float=lambda s: number(s, float),
            parse_constant=constant,
        )
    except json.JSONDecodeError as err:
        raise InputError(f"invalid JSON: {err.msg} at character {err.pos}") from None
