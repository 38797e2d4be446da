"""Client JSON with limits on depth and number length: each refusal one InputError."""

from __future__ import annotations

import json

import pytest

from medmoe.errors import InputError
from medmoe.serve.jsonlimits import json_depth, loads


@pytest.mark.parametrize(
    "text, depth",
    [("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[", "\\"[["]', 1), ("[[]][[]]", 2)],
)
def test_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 33 + "]" * 33, "deeper than 32 levels"),
        ("[" * 100_000 + "]" * 100_000, "deeper than 32 levels"),  # json.loads: RecursionError
        (str(10**400), "longer than 32 characters"),  # a float from it: OverflowError
        ("[1e400]", "must be finite"),
        ("[NaN]", "NaN and Infinity"),
        ("[-Infinity]", "NaN and Infinity"),
        ('{"a": }', "invalid JSON"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_refusals_name_the_limit(text, message):
    with pytest.raises(InputError, match=message):
        loads(text)


@pytest.mark.parametrize(
    "text",
    ["[" * 32 + "]" * 32, '{"points": [[1, 2.5, -3e2]], "labels": [1], "s": "[[[["}', "12345678"],
)
def test_accepted_json_equals_json_loads(text):
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)
