"""Entry point of the ``medmoe`` command.

Each subcommand lives in its own module under :mod:`medmoe.cli`, which exposes
``register(subparsers)``; the module list below is the only place that names them.
Anticipated failures (:class:`medmoe.errors.MedmoeError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medmoe.errors import MedmoeError

# Subcommand modules, in the order they appear in ``medmoe --help``.
SUBCOMMANDS: tuple[str, ...] = ("medmoe.cli.info",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medmoe",
        description="Mixture-of-Experts medical image segmentation without forgetting.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MedmoeError as err:
        print(f"medmoe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medmoe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
