"""JSON of typed values, driven by their types: `encode` turns a value into JSON data, `decode`
reads it back as the type a field declares.

A value type with its own `to_json` / `from_json` (an `Estimate`) keeps its format; any other
dataclass is an object of its fields in declared order; a pydantic model is its JSON dump; an
array a (nested) list; a tuple a list. Numbers are read back as written (an int stays an int; a
dict's int keys, strings in JSON, as ints), so a value decoded and encoded again gives the same JSON.
"""

from __future__ import annotations

import dataclasses
import types
from functools import cache
from typing import Any, Self, Union, get_args, get_origin, get_type_hints

import numpy as np
from pydantic import BaseModel


def encode(value: Any) -> Any:
    """JSON data of `value` (see the module's description)."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    return value


@cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a class's fields."""
    return get_type_hints(cls)


def decode(hint: Any, data: Any) -> Any:
    """`data` (JSON) read as a value of type `hint`, the inverse of `encode`."""
    if data is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        arms = [arm for arm in args if arm is not type(None)]
        return decode(arms[0], data) if len(arms) == 1 else data
    if origin is list:
        return [decode(args[0], item) for item in data]
    if origin is tuple:
        arms = [args[0]] * len(data) if len(args) == 2 and args[1] is Ellipsis else list(args)
        return tuple(decode(arm, item) for arm, item in zip(arms, data, strict=True))
    if origin is dict:  # JSON keys are strings: numbers are read back as the declared key type
        number = args[0] if args[0] in (int, float) else None
        return {key if number is None else number(key): decode(args[1], item) for key, item in data.items()}
    if not isinstance(hint, type):
        return data
    if hasattr(hint, "from_json"):
        return hint.from_json(data)
    if issubclass(hint, BaseModel):
        return hint(**data)
    if dataclasses.is_dataclass(hint):
        return hint(**field_values(hint, data))
    if hint is np.ndarray:
        return np.array(data)
    return data


def field_values(cls: type, data: dict[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields of dataclass `cls` found in `data`, decoded by their declared types (`skip`: not these)."""
    declared = hints(cls)
    return {
        f.name: decode(declared[f.name], data[f.name])
        for f in dataclasses.fields(cls)
        if f.name in data and f.name not in skip
    }


class JsonValue:
    """Base of a dataclass value type whose JSON is its fields: `to_json` / `from_json` by their types."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**field_values(cls, data))
