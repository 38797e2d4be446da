"""Error types. Every failure medmoe anticipates is raised as a :class:`MedmoeError` subclass.

The command line turns these into a one-line message and exit code 2, with no traceback.
"""

from __future__ import annotations


class MedmoeError(Exception):
    """Base class of every error medmoe raises on purpose."""


class CheckpointError(MedmoeError, ValueError):
    """A checkpoint or weights file cannot be read, or does not fit the model."""


class InputError(MedmoeError, ValueError):
    """A user-supplied input (volume, prompt, argument, dataset) is invalid."""


class StateError(MedmoeError, RuntimeError):
    """An object was used in the wrong order (e.g. ``predict`` before ``set_image``)."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name: the one line the
    command line and the server show for a failure raised by a library."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__
