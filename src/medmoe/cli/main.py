"""Entry point of the ``medmoe`` command.

Each subcommand lives in its own module under :mod:`medmoe.cli`, which exposes
``register(subparsers)``; modules are discovered, so adding a subcommand is adding a file.
Anticipated failures (:class:`medmoe.errors.MedmoeError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from medmoe.errors import MedmoeError

# Subcommands listed first in ``medmoe --help``; any other module with ``register`` follows.
_FIRST = ("demo", "segment", "evaluate", "expert", "moe", "fundus", "serve", "info")


def subcommand_modules() -> list[str]:
    """Names of the modules under :mod:`medmoe.cli` that define a subcommand."""
    import medmoe.cli as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name != "main"]
    names.sort(key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n))
    return [f"medmoe.cli.{n}" for n in names]


class MedmoeParser(argparse.ArgumentParser):
    """Argument errors in one line on stderr (exit code 2), like every other medmoe error."""

    def error(self, message: str):  # argparse's default prints the whole usage first
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = MedmoeParser(
        prog="medmoe",
        description="Mixture-of-Experts medical image segmentation without forgetting.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in subcommand_modules():
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(sub)
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
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Tear down a torchrun process group a trainer opened (NCCL warns and may hang at exit
    otherwise); nothing to do when torch.distributed was never used."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
