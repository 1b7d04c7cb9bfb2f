"""Rebuilds events from their own stored JSON without validating them again.

Events were validated when they were made, and the codec wrote their JSON from the
validated fields; reading them back only needs the JSON types turned back into the
field types (ISO times into datetimes, lists into tuples, dicts into nested models).
That is several times faster than validation, which matters on replay. A class with a
field type not listed here is never rebuilt this way: it is validated instead.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["builder_for"]

Convert = Callable[[Any], Any]
Build = Callable[[dict[str, Any]], Any]
_PLAIN = (str, int, float, bool, type(None))
_BUILDERS: dict[type[BaseModel], Build | None] = {}


def _converter(annotation: Any) -> Convert | bool | None:
    """Return a converter, None if the JSON value is right as it is, False if unsupported."""
    origin = typing.get_origin(annotation)
    if annotation in _PLAIN or annotation is Any:
        return None
    if isinstance(annotation, type) and issubclass(annotation, dt.datetime):
        return dt.datetime.fromisoformat
    if typing.get_origin(annotation) is typing.Annotated:
        return _converter(typing.get_args(annotation)[0])
    if getattr(annotation, "__name__", "") == "AwareDatetime":  # pydantic's aware datetime
        return dt.datetime.fromisoformat
    if origin is typing.Literal:
        return None if all(isinstance(a, _PLAIN) for a in typing.get_args(annotation)) else False
    if origin is dict:
        key, value = typing.get_args(annotation)
        return None if key is str and (value is Any or value in _PLAIN) else False
    if origin is tuple:
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis and items[0] in _PLAIN:
            return tuple
        model = items[0] if len(items) == 2 and items[1] is Ellipsis else None
        if isinstance(model, type) and issubclass(model, BaseModel):
            each = builder_for(model)
            if each is None:
                return False
            return lambda values: tuple(each(dict(x)) for x in values)
        return False
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            return None if all(a in _PLAIN for a in members) else False
        inner = _converter(members[0])
        if inner is None or inner is False or inner is True:
            return inner
        return _optional(inner)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        nested = builder_for(annotation)
        return nested if nested is not None else False
    return False


def _optional(convert: Convert) -> Convert:
    def optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return optional


def builder_for(cls: type[BaseModel]) -> Build | None:
    """Return a function that rebuilds ``cls`` from its stored JSON dict, or None if the
    class has a field type this module cannot rebuild (it must then be validated)."""
    if cls in _BUILDERS:
        return _BUILDERS[cls]
    converters: list[tuple[str, Convert]] = []
    supported = True
    for name, field in cls.model_fields.items():
        conv = _converter(field.annotation)
        if conv is False or conv is True:
            supported = False
            break
        if conv is not None:
            converters.append((name, conv))
    if not supported:
        _BUILDERS[cls] = None
        return None
    defaults = {
        name: field.default
        for name, field in cls.model_fields.items()
        if not field.is_required() and field.default_factory is None
    }
    new = object.__new__
    setattr_ = object.__setattr__

    def build(data: dict[str, Any]) -> Any:
        for name, conv in converters:
            if name in data:
                data[name] = conv(data[name])
        values = {**defaults, **data} if len(data) < len(cls.model_fields) else data
        obj = new(cls)
        setattr_(obj, "__dict__", values)
        setattr_(obj, "__pydantic_fields_set__", set(data))
        setattr_(obj, "__pydantic_extra__", None)
        setattr_(obj, "__pydantic_private__", None)
        return obj

    _BUILDERS[cls] = build
    return build
