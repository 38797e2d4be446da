"""The command line names one concept one way, and documents every option (#26).

The test walks the whole argparse tree that ``medmoe --help`` is built from, so a new
subcommand or option is checked without being listed here.
"""

from __future__ import annotations

import argparse
import re

import pytest

from medmoe.cli.main import build_parser

# Option strings that once named a concept another way; each survives, where it does, only as
# a second spelling (an alias) after the canonical one.
RETIRED = {"--base": "--checkpoint", "--data": "--dataset", "--init": "--checkpoint"}
# Where the same option string takes a different type, and why that is still one concept.
SAME_CONCEPT_OTHER_TYPE = {
    ("fundus", "--dataset"): "an IDRiD folder or the word 'synthetic', so a string",
}


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, action) for every argument of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def describe(path, action) -> str:
    return f"medmoe {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"


ARGS = list(walk(build_parser()))


def test_the_tree_is_walked():
    commands = {p for p, _ in ARGS}
    assert ("segment",) in commands and ("moe", "train") in commands
    assert ("fundus", "predict") in commands and len(ARGS) > 100


def test_every_option_has_help():
    missing = [describe(p, a) for p, a in ARGS if not (a.help or "").strip()]
    assert not missing, "options without help text: " + ", ".join(missing)


def test_retired_names_are_only_aliases():
    wrong = [describe(p, a) for p, a in ARGS if a.option_strings and a.option_strings[0] in RETIRED]
    assert not wrong, f"these lead with a retired name ({RETIRED}): {wrong}"


def test_no_positional_paths():
    """Models, bundles and datasets are named by an option everywhere, never by position."""
    positional = [describe(p, a) for p, a in ARGS if not a.option_strings]
    assert positional == ["medmoe demo which"]


def _types_by_option():
    seen: dict[str, dict] = {}
    for path, action in ARGS:
        for opt in action.option_strings:
            if (path[0], opt) in SAME_CONCEPT_OTHER_TYPE:
                continue
            key = getattr(action.type, "__name__", repr(action.type))
            seen.setdefault(opt, {}).setdefault(key, []).append(" ".join(path))
    return seen


def test_one_option_one_type():
    clashes = {opt: kinds for opt, kinds in _types_by_option().items() if len(kinds) > 1}
    assert not clashes, f"one option string, several types: {clashes}"


@pytest.mark.parametrize(
    ("pattern", "canonical"),
    [
        (r"sam-med3d checkpoint", "--checkpoint"),
        (r"\bbundle folder\b(?! to write)", "--moe"),
        (r"click counts", "--clicks"),
        (r"simulated clicks per crop", "--click-iterations"),
        (r"^random seed|seed\b", "--seed"),
    ],
)
def test_a_concept_has_one_name(pattern, canonical):
    """Whatever an option's help calls a SAM-Med3D checkpoint is --checkpoint, and so on."""
    found = {
        describe(p, a): a.option_strings[0]
        for p, a in ARGS
        if a.option_strings
        and a.option_strings[0] != "--out"
        and re.search(pattern, (a.help or "").lower())
    }
    assert found, f"no option's help matches {pattern!r}"
    wrong = {k: v for k, v in found.items() if v != canonical}
    assert not wrong, f"named otherwise than {canonical}: {wrong}"


def test_clicks_is_a_list_of_counts_everywhere():
    clicks = [(p, a) for p, a in ARGS if "--clicks" in a.option_strings]
    assert clicks
    for path, action in clicks:
        assert action.type("5,1,3") == [1, 3, 5], describe(path, action)


def test_seed_is_a_nonnegative_integer_everywhere():
    seeds = [a for _, a in ARGS if "--seed" in a.option_strings]
    assert len(seeds) >= 5
    for action in seeds:
        assert action.type("7") == 7
        with pytest.raises(argparse.ArgumentTypeError):
            action.type("-1")


def test_one_spelling_of_center():
    texts = []
    for _, action in ARGS:
        texts += [action.help or "", *action.option_strings, *map(str, action.choices or ())]
    assert not [t for t in texts if re.search(r"centr(e|ed)\b", t)]


def test_options_are_lower_kebab_case():
    bad = [
        opt
        for _, a in ARGS
        for opt in a.option_strings
        if not re.fullmatch(r"-[a-z]|--[a-z0-9]+(-[a-z0-9]+)*", opt)
    ]
    assert not bad
