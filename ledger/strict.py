"""Builds events whose values already have their fields' exact types, without pydantic.

Most events are made by our own code from values of the right types: a ``str`` for a
``str`` field, a ``tuple`` of ``str`` for ``tuple[str, ...]``, a ``Provenance`` for a
``Provenance``. For such values pydantic's validation changes nothing, yet costs several
microseconds per event, which is most of the append path's time. :func:`filler_for`
returns, per event class, a function that checks each value strictly (exact type and the
field's constraints) and, when every value passes, fills the instance directly. When any
value does not pass (a list for a tuple, an int for a float, a missing field, an unknown
key, a broken constraint), it fills nothing and the caller validates with pydantic as
usual, so the result and the errors are exactly pydantic's. A property test
(tests/ledger/test_strict.py) holds both paths to the same events.

Two differences are accepted: a ``dict`` value is kept as given instead of copied (the
event takes it over; events are frozen, their dicts are treated as read-only), and a
class with a field type or constraint not handled here always takes pydantic's path.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable
from typing import Any

import annotated_types
from pydantic import BaseModel

__all__ = ["filler_for"]

Fill = Callable[[BaseModel, dict[str, Any]], bool]
_EXACT = (str, int, float, bool)
_FILLERS: dict[type[BaseModel], Fill | None] = {}
_MISSING = object()


class _Namespace:
    """The names a generated function refers to (types, literals, defaults)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {
            "_M": _MISSING,
            "_datetime": dt.datetime,
            "_isstr": str.__instancecheck__,
            "_set": object.__setattr__,
        }

    def name(self, value: Any) -> str:
        name = f"_n{len(self.values)}"
        self.values[name] = value
        return name


def _check(annotation: Any, v: str, ns: _Namespace) -> str | None:
    """Return a strict check of variable ``v`` for a field type, or None if not handled."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return "True"
    if annotation in _EXACT:
        return f"type({v}) is {annotation.__name__}"
    if annotation is type(None):
        return f"{v} is None"
    if getattr(annotation, "__name__", "") == "AwareDatetime":
        return f"(type({v}) is _datetime and {v}.utcoffset() is not None)"
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if not all(type(a) is str for a in allowed):
            return None
        return f"(type({v}) is str and {v} in {ns.name(frozenset(allowed))})"
    if origin is dict:
        key, item = typing.get_args(annotation)
        if key is not str or item not in (Any, str, int):
            return None
        values = {
            Any: "",
            str: f" and all(map(_isstr, {v}.values()))",
            int: f" and all(type(x) is int for x in {v}.values())",
        }[item]
        return f"(type({v}) is dict and all(map(_isstr, {v})){values})"
    if origin is tuple:
        items = typing.get_args(annotation)
        if items == (str, Ellipsis):
            return f"(type({v}) is tuple and all(map(_isstr, {v})))"
        model = items[0] if len(items) == 2 and items[1] is Ellipsis else None
        if isinstance(model, type) and issubclass(model, BaseModel):
            return f"(type({v}) is tuple and all(type(x) is {ns.name(model)} for x in {v}))"
        return None
    if origin in (typing.Union, types.UnionType):
        checks = [_check(member, v, ns) for member in typing.get_args(annotation)]
        if any(check is None for check in checks):
            return None
        return "(" + " or ".join(typing.cast(list[str], checks)) + ")"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # an instance is taken as it is, as pydantic does (revalidate_instances="never")
        return f"type({v}) is {ns.name(annotation)}"
    return None


def _constrained(check: str, metadata: list[Any], v: str) -> str | None:
    """Return ``check`` with the field's constraints added, or None if one is not handled."""
    for constraint in metadata:
        if isinstance(constraint, annotated_types.MinLen):
            check = f"({check} and len({v}) >= {int(constraint.min_length)})"
        elif isinstance(constraint, annotated_types.Ge) and type(constraint.ge) in (int, float):
            check = f"({check} and {v} >= {constraint.ge!r})"
        else:
            return None
    return check


def filler_for(cls: type[BaseModel]) -> Fill | None:
    """Return a function that fills an instance of ``cls`` from strictly typed keyword
    values and returns True, or returns False (touching nothing) so the caller validates.
    None if the class has a field this module does not handle."""
    if cls in _FILLERS:
        return _FILLERS[cls]
    ns = _Namespace()
    lines = [
        "def fill(instance, data):",
        f"    if not {ns.name(frozenset(cls.model_fields))}.issuperset(data):",
        "        return False",
    ]
    names = []
    for i, (name, info) in enumerate(cls.model_fields.items()):
        v = f"v{i}"
        check = _check(info.annotation, v, ns)
        check = _constrained(check, info.metadata, v) if check is not None else None
        if check is None or info.alias is not None:
            _FILLERS[cls] = None
            return None
        lines.append(f"    {v} = data.get({name!r}, _M)")
        lines.append(f"    if {v} is _M:")
        if info.default_factory is not None:
            lines.append(f"        {v} = {ns.name(info.default_factory)}()")
        elif info.is_required():
            lines.append("        return False")
        else:
            lines.append(f"        {v} = {ns.name(info.default)}")
        lines.append(f"    elif not {check}:")
        lines.append("        return False")
        names.append(f"{name!r}: {v}")
    lines += [
        f"    _set(instance, '__dict__', {{{', '.join(names)}}})",
        "    _set(instance, '__pydantic_fields_set__', set(data))",
        "    _set(instance, '__pydantic_extra__', None)",
        "    _set(instance, '__pydantic_private__', None)",
        "    return True",
    ]
    exec("\n".join(lines), ns.values)  # code made here from field types
    fill = typing.cast(Fill, ns.values["fill"])
    _FILLERS[cls] = fill
    return fill
