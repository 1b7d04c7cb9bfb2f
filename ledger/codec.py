"""Turns events into stored rows and back, lifting old schema versions on the way.

A stored row is (event id, topic, state bytes, stream); the store adds the position. The
id is the event's 32-hex-digit id (a UUID in PostgreSQL); the topic is eventsourcing's
``module:Class`` topic of the event class; the state is the event's JSON without ``id``,
``stream`` and ``position`` (they have their own columns), with the schema version first
under ``"v"``. Rows at the class's current version are rebuilt without a second
validation (:mod:`ledger.trusted`); older rows are lifted by the class's upcasters
``v -> v+1`` in turn and then validated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel, ValidationError

from skyledger.ledger.access import ACCESS_EVENT_TYPES
from skyledger.ledger.canonical import canonical_bytes
from skyledger.ledger.errors import UnknownEventType
from skyledger.ledger.events import EVENT_TYPES, DatapointAdded, Event, rejected
from skyledger.ledger.trusted import builder_for

__all__ = [
    "StoredRow",
    "class_of",
    "decode",
    "encode",
    "encode_datapoint",
    "register_event_type",
    "topic_of",
]

_BY_TOPIC: dict[str, type[Event]] = {}
_TOPIC_OF: dict[type[Event], str] = {}
_OPTIONS = orjson.OPT_UTC_Z


class StoredRow(NamedTuple):
    """One event as the store holds it (before the store gives it a position); a tuple,
    so that rows encoded in worker processes travel back cheaply."""

    id: str
    topic: str
    state: bytes
    stream: str


# A stored topic names its class's module without the import package the folders install
# under ("ledger.events:AlertReceived", as every version has written it), so a ledger reads
# the same whatever the package is called.
_PACKAGE = "skyledger."


def register_event_type(cls: type[Event]) -> str:
    """Make an event class known to the codec and return its topic."""
    topic = get_topic(cls).removeprefix(_PACKAGE)
    _BY_TOPIC[topic] = cls
    _TOPIC_OF[cls] = topic
    return topic


for _cls in EVENT_TYPES + ACCESS_EVENT_TYPES:
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
    try:  # a module of ours first, under the import package, then as written
        found = resolve_topic(_PACKAGE + topic)
    except Exception:
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


def _nested(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    msg = f"cannot encode {type(value).__name__}"
    raise TypeError(msg)


def encode(event: Event) -> StoredRow:
    """Return the stored row of an event."""
    cls = type(event)
    state = {"v": cls.schema_version, **event.__dict__}
    del state["id"], state["stream"], state["position"]  # they have their own columns
    for name in cls.unstored_if_none:
        if state.get(name, 0) is None:
            del state[name]
    data = orjson.dumps(state, default=_nested, option=_OPTIONS)
    return StoredRow(event.id, topic_of(cls), data, event.stream)


_DATAPOINT_TOPIC = topic_of(DatapointAdded)


def encode_datapoint(
    stream: str,
    datapoint_id: str,
    kind: str,
    body: dict[str, Any],
    causation: tuple[str, ...],
    run_id: str | None,
    time: dt.datetime | None = None,
) -> StoredRow:
    """Return the stored row of a ``DatapointAdded`` made of these values (which must be
    of the field types), without building the event: the body is serialised once, in
    its canonical form, for both the id and the stored state (the bulk of ingest).

    The row decodes to the event ``DatapointAdded(...)`` with the same values and has
    its id (``tests/ledger/test_codec.py``); the body is stored with its keys sorted.
    """
    body_json = canonical_bytes(body)
    content = {"body": orjson.Fragment(body_json), "datapoint_id": datapoint_id, "stream": stream}
    event_id = DatapointAdded.id_of(canonical_bytes(content))
    state = {
        "v": DatapointAdded.schema_version,
        "time": time or dt.datetime.now(dt.UTC),
        "run_id": run_id,
        "causation": causation,
        "datapoint_id": datapoint_id,
        "kind": kind,
        "body": orjson.Fragment(body_json),
    }
    return StoredRow(event_id, _DATAPOINT_TOPIC, orjson.dumps(state, option=_OPTIONS), stream)


def decode(row_id: UUID | str, topic: str, state: bytes, stream: str, position: int) -> Event:
    """Return the event of a stored row, upcast to its class's current schema version."""
    cls = class_of(topic)
    data: dict[str, Any] = orjson.loads(state)
    version = data.pop("v", 1)
    data["id"] = row_id.hex if isinstance(row_id, UUID) else row_id
    data["stream"] = stream
    data["position"] = position
    if version == cls.schema_version:
        build = builder_for(cls)
        if build is not None:
            event: Event = build(data)
            return event
    while version < cls.schema_version:
        upcast = cls.upcasters.get(version)
        if upcast is None:
            msg = f"{cls.__name__} has no upcaster from schema version {version}"
            raise UnknownEventType(msg)
        data = upcast(data)
        version += 1
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise rejected(cls.__name__, exc) from exc
