"""The event vocabulary: every fact skyledger records, as a frozen pydantic model.

Each event has an envelope (``id``, ``stream``, ``time``, ``run_id``, ``causation`` and,
once stored, ``position``) and content. The ``id`` is content-addressed: a hash of the
event type and the fields named in ``identity`` (never of the envelope), so appending
the same fact twice, from any process or run, stores it once.

Each class has a ``schema_version``; when a model changes, bump it and add an upcaster
``upcast_vN(data) -> data`` that lifts stored version N to N+1 (see ``ledger.codec``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from hashlib import blake2b
from typing import Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ledger.canonical import DIGEST_BYTES, canonical_bytes, content_hash
from ledger.errors import EventRejected
from ledger.strict import filler_for

__all__ = [
    "EVENT_TYPES",
    "AlertReceived",
    "ConfigurationRegistered",
    "DatapointAdded",
    "Event",
    "FilterDecided",
    "Provenance",
    "ReactionIssued",
    "ResultDerived",
    "ResultFailed",
    "RunFinished",
    "RunStarted",
    "StateCombined",
]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Provenance(BaseModel):
    """Who computed a derived event and how: unit, version, source digest, configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: str = Field(description="registered unit name")
    unit_version: str = Field(description="the unit's declared version")
    unit_digest: str = Field(description="BLAKE2b digest of the unit's source code")
    config: str = Field(description="hash of the unit's full configuration (see registry)")
    duration_s: float = Field(default=0.0, ge=0, description="wall time the unit took")

    def identity(self) -> dict[str, str]:
        """Return what identifies the computation: everything but the measured duration."""
        return {
            "unit": self.unit,
            "unit_version": self.unit_version,
            "unit_digest": self.unit_digest,
            "config": self.config,
        }


class Event(BaseModel):
    """Base of all events: the envelope and the content-addressed id."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    schema_version: ClassVar[int] = 1
    identity: ClassVar[tuple[str, ...]] = ()
    upcasters: ClassVar[dict[int, Upcaster]] = {}
    _prefix: ClassVar[Any] = blake2b(b"event:Event\x00", digest_size=DIGEST_BYTES)

    id: str = Field(default="", description="content-addressed event id (32 hex digits)")
    stream: str = Field(min_length=1, description="the stream (stock, run, ...) it belongs to")
    time: AwareDatetime = Field(default_factory=_now, description="when it was recorded (UTC)")
    run_id: str | None = Field(default=None, description="the run that recorded it")
    causation: tuple[str, ...] = Field(default=(), description="ids of events it derives from")
    position: int | None = Field(
        default=None, exclude=True, description="position in the ledger, given by the store"
    )

    def __init__(self, **data: Any) -> None:
        fill = filler_for(type(self))
        if fill is None or not fill(self, data):  # values not of the exact types: validate
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise rejected(type(self).__name__, exc) from None
        if not self.id:  # frozen: write the computed id straight into the instance dict
            self.__dict__["id"] = self.compute_id()

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Return a validated event, computing its id if the data has none."""
        event = super().model_validate(obj, **kwargs)
        if not event.id:
            event.__dict__["id"] = event.compute_id()
        return event

    def compute_id(self) -> str:
        """Return the id this event's content implies (type + ``identity`` fields)."""
        cls = type(self)
        fields = self.__dict__
        content = {name: fields[name] for name in cls.identity}
        provenance = content.get("provenance")
        if isinstance(provenance, Provenance):  # the measured duration is not identity
            content["provenance"] = provenance.identity()
        h = cls._prefix.copy()
        h.update(canonical_bytes(content))
        digest: str = h.hexdigest()
        return digest

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The same bytes content_hash("event:<Type>", ...) starts with, hashed once.
        cls._prefix = blake2b(f"event:{cls.__name__}".encode() + b"\x00", digest_size=DIGEST_BYTES)


class AlertReceived(Event):
    """A packet arrived: its digest and where it came from, or why it could not be read."""

    identity = ("digest",)

    def compute_id(self) -> str:
        """Return the id: a packet's digest, or for one that could not be read, the digest
        with where it was and why (unreadable inputs without bytes share one digest)."""
        if self.error is None:
            return super().compute_id()
        content = {"digest": self.digest, "locator": self.locator, "error": self.error}
        return content_hash("event:AlertReceived", content)

    digest: str = Field(description="BLAKE2b digest of the packet bytes (packet store key)")
    source: str = Field(description="the source that yielded it (file, archive, stream)")
    locator: str = Field(description="where in the source (path#record, topic:offset)")
    alert_id: str | None = Field(default=None, description="the survey's alert id")
    schema_name: str | None = Field(default=None, description="packet schema and version")
    error: str | None = Field(default=None, description="why it could not be decoded")


class DatapointAdded(Event):
    """A datapoint (detection, upper limit, forced photometry) joined a stock's history.

    The same measurement can join several stocks (ZTF histories of neighbouring objects
    share entries), so the stream is part of the identity; a re-measured datapoint (same
    id, new body) is a new event, and both stay in the ledger.
    """

    identity = ("stream", "datapoint_id", "body")

    datapoint_id: str = Field(description="content-addressed datapoint id")
    kind: str = Field(description="detection | upper_limit | forced | other")
    body: dict[str, Any] = Field(description="the measurement")


class FilterDecided(Event):
    """A channel's filter accepted or rejected an alert (accepted into a group, or with a code)."""

    identity = ("channel", "alert_digest", "provenance")

    channel: str
    alert_digest: str
    accepted: bool
    code: int | None = Field(default=None, description="rejection code (negative) if rejected")
    group: int | None = Field(default=None, description="group that gates T1/T2 if accepted")
    reason: str = Field(default="", description="why, in words (rejections, autocomplete)")
    provenance: Provenance


class StateCombined(Event):
    """A combiner made a state (a set of datapoint ids) of a stock."""

    identity = ("state_id", "provenance")

    state_id: str = Field(description="hash of the sorted datapoint ids")
    datapoint_ids: tuple[str, ...]
    channels: tuple[str, ...] = ()
    provenance: Provenance


class ResultDerived(Event):
    """A T2 unit derived a result from a stock, datapoint, state or view (+ dependencies)."""

    identity = ("result_id",)

    result_id: str = Field(description="hash of unit, version, configuration and inputs")
    subject: str = Field(description="id of what the result is about (state, datapoint, stock)")
    inputs: tuple[str, ...] = Field(default=(), description="ids of results it depended on")
    body: dict[str, Any]
    provenance: Provenance


class ResultFailed(Event):
    """A T2 unit raised: the error with its traceback, and which attempt it was."""

    identity = ("result_id", "attempt")

    result_id: str
    subject: str
    attempt: int = Field(ge=1)
    error: str
    traceback: str
    retry_after_s: float | None = Field(default=None, description="None: no more retries")
    provenance: Provenance


def _reaction_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no ``stock``: reactors put it in the payload, if at all."""
    stock = (data.get("payload") or {}).get("stock")
    data["stock"] = stock if isinstance(stock, str) and stock else None
    return data


class ReactionIssued(Event):
    """A T3 unit reacted (report, webhook, tag) with an idempotency key and the outcome.

    Schema version 2 added ``stock`` (version 1 events take it from the payload).
    """

    schema_version: ClassVar[int] = 2
    upcasters = {1: _reaction_v1}
    identity = ("idempotency_key", "attempt")

    idempotency_key: str
    target: str = Field(description="where the reaction went (URL, file, tag)")
    payload: dict[str, Any] = Field(default_factory=dict)
    stock: str | None = Field(default=None, description="the stock it is about, if one")
    outcome: Literal["delivered", "failed", "skipped"]
    detail: str = ""
    attempt: int = Field(default=1, ge=1)
    provenance: Provenance


class RunStarted(Event):
    """A run began: the job (hash and text) and the software and host that ran it."""

    identity = ("run",)

    run: str = Field(description="run id")
    job_hash: str
    job_text: str
    packages: dict[str, str] = Field(description="distribution name -> version")
    host: str
    user: str
    argv: tuple[str, ...] = ()


class RunFinished(Event):
    """A run ended, with its status and summary."""

    identity = ("run",)

    run: str
    status: Literal["ok", "failed", "interrupted"]
    summary: dict[str, Any] = Field(default_factory=dict)


class ConfigurationRegistered(Event):
    """A unit configuration was recorded once, under its content hash."""

    identity = ("config_hash",)

    config_hash: str
    unit: str
    config: dict[str, Any]


EVENT_TYPES: tuple[type[Event], ...] = (
    AlertReceived,
    DatapointAdded,
    FilterDecided,
    StateCombined,
    ResultDerived,
    ResultFailed,
    ReactionIssued,
    RunStarted,
    RunFinished,
    ConfigurationRegistered,
)


def rejected(type_name: str, exc: ValidationError) -> EventRejected:
    """Return an EventRejected naming the event type and each offending field."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(event)'}: {err['msg']}" for err in exc.errors()
    )
    return EventRejected(f"invalid {type_name}: {problems}")
