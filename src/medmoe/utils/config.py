"""The one way configs become JSON and come back: typed (frozen) dataclasses <-> plain dicts.

Every config medmoe saves beside its weights (model, gate, training, expert and bundle
records) goes through these two functions, so they all fail alike: unknown keys, missing keys
and bad values are a :class:`~medmoe.errors.CheckpointError` (or the error type asked for)
naming the file or object, never a ``TypeError`` from a constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from medmoe.errors import CheckpointError, MedmoeError, first_line

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config: Any) -> dict:
    """A JSON-able dict of a dataclass instance (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def _tuple_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}


def config_from_dict(
    cls: type[T], data: Any, *, what: str, error: type[MedmoeError] = CheckpointError
) -> T:
    """Rebuild ``cls`` from ``data``; refuse a non-dict, unknown or missing keys and bad values
    with one ``error`` line that starts with ``what`` (a path or a name)."""
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise error(f"{what}: a {name} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{what}: unknown {name} keys {unknown}")
    tuples = _tuple_fields(cls)
    values = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # missing keys, values a __post_init__ refuses
        raise error(f"{what}: bad {name}: {first_line(err)}") from None
