"""``to_dict``/``from_dict`` for the frozen dataclasses that cross module boundaries
(``vara.types``): driven by the type hints, so a record needs no code of its own. Tuples
and nested records round-trip; ``to_dict`` yields JSON-ready values (numpy scalars become
Python numbers) and ``from_dict`` refuses keys the record does not have."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import numpy as np

__all__ = ["Record"]


class Record:
    """Generic, type-hint driven (de)serialisation for the dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        hints = _hints(cls)
        names = hints.keys()
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown keys {sorted(unknown)}")
        return cls(**{k: _load(hints[k], v) for k, v in data.items()})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved field types of a dataclass (resolving costs ~0.5 ms; records are many)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _load(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _load(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        item = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_load(item, v) for v in value)
        return tuple(_load(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        return {k: _load(args[1], v) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    return value
