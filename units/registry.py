"""The unit registry: units are found by name, in installed packages or registered here.

A science group ships units in its own package and declares them as entry points:

    [project.entry-points."skyledger.units"]
    T2MyClassifier = "mygroup.units:T2MyClassifier"

After ``pip install``, jobs can name ``T2MyClassifier``; nothing here changes. Units
defined in a script or a test register with ``@register_unit``. Names are unique: a second
unit under a taken name is refused, and so is a name that two installed packages claim.

The built-in entry points name unit modules only. A unit that belongs to another layer
(the runners' sources that read Kafka or pace a stream) is named to the registry by that
layer with :func:`register_unit_at`, and imported only when a job names it.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from skyledger.ledger.errors import ConfigError
from skyledger.units.base import Unit

__all__ = [
    "ENTRY_POINT_GROUP",
    "TIERS",
    "available_units",
    "describe_options",
    "describe_units",
    "load_unit",
    "register_unit",
    "register_unit_at",
]

ENTRY_POINT_GROUP = "skyledger.units"
U = TypeVar("U", bound=type[Unit])
_REGISTERED: dict[str, type[Unit]] = {}
_AT: dict[str, str] = {}  # name -> "module:Class", registered by the layer that owns it


def register_unit(cls: U) -> U:
    """Register a unit class under its ``name`` (a decorator); refuse a taken name."""
    if not (isinstance(cls, type) and issubclass(cls, Unit)):
        raise ConfigError(f"{cls!r} is not a unit class (subclass a contract in units)")
    taken = _REGISTERED.get(cls.name)
    if taken is not None and taken is not cls:
        msg = f"unit name {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}"
        raise ConfigError(msg)
    _REGISTERED[cls.name] = cls
    return cls


def register_unit_at(name: str, target: str) -> None:
    """Make the unit class at ``target`` (``module:Class``) known under ``name``, to be
    imported when a job first names it."""
    taken = _AT.get(name, target)
    if taken != target:
        raise ConfigError(f"unit name {name!r} is taken by {taken}")
    _AT[name] = target


def _entry_point_names() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return found | _AT


def load_unit(name: str) -> type[Unit]:
    """Return the unit class registered or installed under ``name``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _AT:  # named by the layer that owns it: loaded as an entry point is
        installed = {_AT[name]: EntryPoint(name, _AT[name], ENTRY_POINT_GROUP)}
    else:
        installed = {ep.value: ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=name)}
    if len(installed) > 1:
        where = "; ".join(
            f"{ep.value} (from {ep.dist.name if ep.dist else 'an unnamed distribution'})"
            for ep in installed.values()
        )
        msg = f"unit name {name!r} is installed twice, and a job cannot tell which: {where}"
        raise ConfigError(msg)
    for ep in installed.values():
        try:
            cls = ep.load()
        except Exception as exc:
            msg = f"unit {name!r} ({ep.value}) could not be imported: {exc}"
            raise ConfigError(msg) from exc
        if not (isinstance(cls, type) and issubclass(cls, Unit)):
            raise ConfigError(f"entry point {name!r} ({ep.value}) is not a unit class")
        if cls.name != name:
            cls.name = name  # the installed name is the one jobs use
        return register_unit(cls)
    known = sorted(set(_REGISTERED) | set(_entry_point_names()))
    raise ConfigError(f"unknown unit {name!r}; known units: {', '.join(known) or 'none'}")


def available_units() -> dict[str, str]:
    """Return every known unit name with where it comes from (module path)."""
    found = _entry_point_names()
    found.update({n: f"{c.__module__}:{c.__qualname__}" for n, c in _REGISTERED.items()})
    return dict(sorted(found.items()))


TIERS = {
    "Source": "T0 source",
    "Shaper": "T0 shaper",
    "Filter": "T0 filter",
    "Combiner": "T1 combiner",
    "T2Unit": "T2 unit",
    "Reactor": "T3 reactor",
}
"""The tier of each unit contract, as people name it."""


def describe_options(name: str) -> dict[str, Any]:
    """Return a unit's description and its options: name, type, default (or required)
    and description of each field of its ``Config``."""
    cls = load_unit(name)
    tier = next((TIERS[b.__name__] for b in cls.__mro__ if b.__name__ in TIERS), "?")
    options = []
    for key, field in cls.Config.model_fields.items():
        kind = field.annotation
        shown = getattr(kind, "__name__", None) if isinstance(kind, type) else None
        option: dict[str, Any] = {"option": key,
                                  "type": shown or str(kind).replace("typing.", "")}
        if field.is_required():
            option["required"] = True
        else:
            default = field.get_default(call_default_factory=True)
            plain = isinstance(default, str | int | float | bool | list | dict) or default is None
            option["default"] = default if plain else repr(default)
        option["description"] = field.description or ""
        options.append(option)
    doc = (cls.__doc__ or "").strip()
    return {"unit": name, "tier": tier, "version": cls.version, "description": doc,
            "options": options}  # fmt: skip


def describe_units() -> list[dict[str, str]]:
    """Return every known unit: name, tier (its contract), version, the package that
    installs it and where it is defined; a unit that cannot be imported says why."""
    packages = {name: "skyledger" for name in _AT} | {
        ep.name: ep.dist.name if ep.dist else "" for ep in entry_points(group=ENTRY_POINT_GROUP)
    }
    rows = []
    for name, where in available_units().items():
        row = {"unit": name, "defined_in": where, "package": packages.get(name, "(registered)")}
        try:
            cls = load_unit(name)
        except ConfigError as exc:
            rows.append(row | {"tier": "?", "version": "?", "error": str(exc)})
            continue
        tier = next((TIERS[b.__name__] for b in cls.__mro__ if b.__name__ in TIERS), "?")
        rows.append(row | {"tier": tier, "version": cls.version})
    return rows
