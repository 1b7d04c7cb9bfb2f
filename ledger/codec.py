"""Turns events into stored rows and back, lifting old schema versions on the way.

A stored row is (event id as UUID, version 0, topic, state bytes, stream). The topic is
eventsourcing's ``module:Class`` topic of the event class; the state is the event's JSON
without ``id`` and ``stream`` (they have their own columns), with the schema version first
under ``"v"``. Reading a row whose ``v`` is older than the class's ``schema_version``
applies the class's upcasters ``v -> v+1`` in turn before validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import ValidationError

from ledger.errors import UnknownEventType
from ledger.events import EVENT_TYPES, Event, rejected

__all__ = ["StoredRow", "decode", "encode", "register_event_type", "topic_of"]

_EXCLUDE = {"id", "stream", "position"}
_BY_TOPIC: dict[str, type[Event]] = {}
_TOPIC_OF: dict[type[Event], str] = {}


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One event as the store holds it."""

    id: UUID
    topic: str
    state: bytes
    stream: str


def register_event_type(cls: type[Event]) -> str:
    """Make an event class known to the codec and return its topic."""
    topic = get_topic(cls)
    _BY_TOPIC[topic] = cls
    _TOPIC_OF[cls] = topic
    return topic


for _cls in EVENT_TYPES:
    register_event_type(_cls)


def topic_of(cls: type[Event]) -> str:
    """Return the stored topic of an event class (registering it on first use)."""
    topic = _TOPIC_OF.get(cls)
    return topic if topic is not None else register_event_type(cls)


def class_of(topic: str) -> type[Event]:
    """Return the event class of a stored topic."""
    cls = _BY_TOPIC.get(topic)
    if cls is not None:
        return cls
    try:
        found = resolve_topic(topic)
    except Exception as exc:
        msg = f"stored topic {topic!r} names no importable event class: {exc}"
        raise UnknownEventType(msg) from exc
    if not (isinstance(found, type) and issubclass(found, Event)):
        msg = f"stored topic {topic!r} resolves to {found!r}, not an event class"
        raise UnknownEventType(msg)
    register_event_type(found)
    return found


def encode(event: Event) -> StoredRow:
    """Return the stored row of an event."""
    cls = type(event)
    body = event.model_dump_json(exclude=_EXCLUDE)
    state = b'{"v":%d,%s' % (cls.schema_version, body[1:].encode())
    return StoredRow(UUID(hex=event.id), topic_of(cls), state, event.stream)


def decode(row_id: UUID | str, topic: str, state: bytes, stream: str, position: int) -> Event:
    """Return the event of a stored row, upcast to its class's current schema version."""
    cls = class_of(topic)
    data: dict[str, Any] = orjson.loads(state)
    version = data.pop("v", 1)
    while version < cls.schema_version:
        upcast = cls.upcasters.get(version)
        if upcast is None:
            msg = f"{cls.__name__} has no upcaster from schema version {version}"
            raise UnknownEventType(msg)
        data = upcast(data)
        version += 1
    data["id"] = row_id.hex if isinstance(row_id, UUID) else UUID(row_id).hex
    data["stream"] = stream
    data["position"] = position
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise rejected(cls.__name__, exc) from exc
