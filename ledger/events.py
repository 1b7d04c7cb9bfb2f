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

from skyledger.ledger.canonical import DIGEST_BYTES, canonical_bytes
from skyledger.ledger.errors import EventRejected
from skyledger.ledger.ids import bodies_id
from skyledger.ledger.strict import filler_for

__all__ = [
    "EVENT_TYPES",
    "AlertReceived",
    "ConfigurationRegistered",
    "DatapointAdded",
    "DeliveryClaimed",
    "Event",
    "FilterDecided",
    "Provenance",
    "ReactionIntended",
    "ReactionIssued",
    "ReplayLimits",
    "ResultDerived",
    "ResultFailed",
    "RunFinished",
    "RunHeartbeat",
    "RunStarted",
    "StateCombined",
    "UnitUse",
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


class UnitUse(BaseModel):
    """A unit as a job uses it: its role there and its provenance (for a T2 entry, the
    role names the entry: ``t2:lc_r``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str = Field(description="source, shaper:SURVEY, filter:CHANNEL, combiner, t2:ENTRY, t3:N")
    provenance: Provenance


class Event(BaseModel):
    """Base of all events: the envelope and the content-addressed id."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    schema_version: ClassVar[int] = 1
    identity: ClassVar[tuple[str, ...]] = ()
    unstored_if_none: ClassVar[tuple[str, ...]] = ()
    """Fields added later with a default of None, left out of the stored state when None
    (such an event is stored as before they existed, and decodes to the default)."""
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
        return cls.id_of(canonical_bytes(content))

    @classmethod
    def id_for(cls, **identity: Any) -> str:
        """Return the id of the event of this type with these ``identity`` fields (all of
        them, no other): how a reader finds an event whose identity it knows."""
        if set(identity) != set(cls.identity):
            msg = (f"{cls.__name__} is identified by {', '.join(cls.identity)}, "
                   f"not {', '.join(identity)}")  # fmt: skip
            raise TypeError(msg)
        return cls.id_of(canonical_bytes(identity))

    @classmethod
    def id_of(cls, canonical: bytes) -> str:
        """Return the id of an event of this type whose identity content has these
        canonical bytes (``ledger.canonical.canonical_bytes``)."""
        h = cls._prefix.copy()
        h.update(canonical)
        digest: str = h.hexdigest()
        return digest

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The same bytes content_hash("event:<Type>", ...) starts with, hashed once.
        cls._prefix = blake2b(f"event:{cls.__name__}".encode() + b"\x00", digest_size=DIGEST_BYTES)


class AlertReceived(Event):
    """A packet arrived: its digest and where it came from, or why it could not be read."""

    identity = ("digest",)
    unstored_if_none = ("schema_digest",)

    def compute_id(self) -> str:
        """Return the id: a packet's digest, or for one that could not be read, the digest
        with where it was and why (unreadable inputs without bytes share one digest)."""
        if self.error is None:
            return super().compute_id()
        content = {"digest": self.digest, "locator": self.locator, "error": self.error}
        return self.id_of(canonical_bytes(content))

    digest: str = Field(description="BLAKE2b digest of the packet bytes (packet store key)")
    source: str = Field(description="the source that yielded it (file, archive, stream)")
    locator: str = Field(description="where in the source (path#record, topic:offset)")
    alert_id: str | None = Field(default=None, description="the survey's alert id")
    schema_name: str | None = Field(default=None, description="packet schema and version")
    error: str | None = Field(default=None, description="why it could not be decoded")
    schema_digest: str | None = Field(
        default=None,
        description="the digest of the writer schema (JSON text, kept with the packets) a "
        "schema registry gave for a framed packet whose id skyledger does not ship; None "
        "for every other packet",
    )


class DatapointAdded(Event):
    """A datapoint (detection, upper limit, forced photometry) joined a stock's history.

    The same measurement can join several stocks (ZTF histories of neighbouring objects
    share entries), so the stream is part of the identity; a re-measured datapoint (same
    id, new body) is a new event, and both stay in the ledger.
    """

    identity = ("stream", "datapoint_id", "body")
    unstored_if_none = ("shaper",)

    def compute_id(self) -> str:
        """Return the id: of (stream, datapoint id, body), and the shaper's tag if set."""
        if self.shaper is None:
            return super().compute_id()
        content = {"stream": self.stream, "datapoint_id": self.datapoint_id,
                   "body": self.body, "shaper": self.shaper}  # fmt: skip
        return self.id_of(canonical_bytes(content))

    datapoint_id: str = Field(description="content-addressed datapoint id")
    kind: str = Field(description="detection | upper_limit | forced | other")
    body: dict[str, Any] = Field(description="the measurement")
    shaper: str | None = Field(
        default=None,
        description="the tag of the shaper of a replayed variant that made it from the "
        "stored packet (None: made at ingest, by the ledger's own shaper)",
    )


def _decided_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named neither the alert's event nor its position, nor autocomplete."""
    causation = data.get("causation") or ()
    data["alert"] = causation[0] if causation else None
    data["alert_position"] = None
    data["autocomplete"] = str(data.get("reason", "")).startswith("autocomplete")
    return data


class FilterDecided(Event):
    """A channel's filter accepted or rejected an alert (accepted into a group, or with a code).

    A channel is its name, its filter (unit, version, code, configuration: the
    provenance) and whether it autocompletes; two jobs with the same channel share its
    decisions. ``alert`` and ``alert_position`` name the AlertReceived event decided on,
    so that "decided by alert N" reads need no other event. Schema version 2 added
    ``alert``, ``alert_position`` and ``autocomplete`` (version 1 events take the alert
    from their causation and no position).
    """

    schema_version: ClassVar[int] = 2
    upcasters = {1: _decided_v1}
    identity = ("channel", "alert_digest", "autocomplete", "provenance")

    channel: str
    alert_digest: str
    alert: str | None = Field(default=None, description="id of the AlertReceived event")
    alert_position: int | None = Field(default=None, description="ledger position of the alert")
    autocomplete: bool = Field(default=False, description="the channel autocompletes")
    accepted: bool
    code: int | None = Field(default=None, description="rejection code (negative) if rejected")
    group: int | None = Field(default=None, description="group that gates T1/T2 if accepted")
    reason: str = Field(default="", description="why, in words (rejections, autocomplete)")
    provenance: Provenance


def _state_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had ``channels`` and no alert; its causation was its datapoint events."""
    data.pop("channels", None)
    data["bodies"] = bodies_id(data.get("causation") or ())
    data["alert"] = None
    data["alert_position"] = None
    return data


class StateCombined(Event):
    """A combiner made a state (a set of datapoint ids) of a stock at an alert.

    The state holds datapoints of the stock the ledger knew at ``alert`` (the
    AlertReceived event at ``alert_position``), those the combiner chose (``until``,
    ``set_aside``); ``bodies`` hashes the ids of the events
    that added them, so a state id with other bodies is another state. Its causation
    names the alert, the decisions that made a channel follow it, and the datapoint
    events. Schema version 2 replaced ``channels`` (who follows a stock is in the
    decisions) with ``alert``, ``alert_position`` and ``bodies``.
    """

    schema_version: ClassVar[int] = 2
    upcasters = {1: _state_v1}
    identity = ("alert", "state_id", "bodies", "provenance")
    unstored_if_none = ("shaper", "until", "set_aside")

    state_id: str = Field(description="hash of the sorted datapoint ids")
    datapoint_ids: tuple[str, ...]
    bodies: str = Field(description="hash of the ids of the events that added the datapoints")
    alert: str | None = Field(default=None, description="id of the AlertReceived it was made at")
    alert_position: int | None = Field(default=None, description="ledger position of that alert")
    provenance: Provenance
    shaper: str | None = Field(
        default=None,
        description="the tag of the replayed shaper whose datapoints it holds (None: ingest's)",
    )
    until: float | None = Field(
        default=None,
        description="the time the combiner cut the state at (its alert's, in the datapoints' "
        "own time scale): it holds nothing measured later; None: not cut by time",
    )
    set_aside: dict[str, int] | None = Field(
        default=None,
        description="how many datapoints known at the alert the combiner left out, by "
        "reason; None: none",
    )


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


class ReactionIntended(Event):
    """A T3 unit asked for a reaction (report, webhook, tag): appended with the reactor's
    tracking position, before anything is delivered (the outbox).

    The causation names the states and results it was made from; ``intended_by`` the
    T3 projector (one reactor of one job) whose outbox delivers it: another job with the
    same reactor never delivers it, not even to retry it. Delivery follows:
    each attempt is claimed (:class:`DeliveryClaimed`), then its outcome recorded
    (:class:`ReactionIssued`), all in the stream ``reaction:<key>``.
    """

    identity = ("idempotency_key",)

    idempotency_key: str
    target: str = Field(description="where the reaction goes (URL, file, tag)")
    payload: dict[str, Any] = Field(default_factory=dict)
    stock: str | None = Field(default=None, description="the stock it is about, if one")
    intended_by: str = Field(
        default="", description="the T3 projector that intended it (its outbox delivers it)"
    )
    provenance: Provenance
    channels: tuple[str, ...] | None = Field(
        default=None, description="the channels whose selection it was made for (their readers "
        "see it); None in ledgers before it was recorded"
    )

    unstored_if_none = ("channels",)


class DeliveryClaimed(Event):
    """A process claimed attempt ``attempt`` at delivering a reaction, before trying it.

    The id is (key, attempt): of two processes claiming the same attempt, the store keeps
    one claim, and the other, seeing its claim not stored, does not deliver.
    """

    identity = ("idempotency_key", "attempt")

    idempotency_key: str
    attempt: int = Field(ge=1)
    provenance: Provenance


class ReactionIssued(Event):
    """One attempt at delivering a reaction, and its outcome (delivered or failed).

    New attempts name their claim and the intent in their causation and leave the
    payload to the intent (:class:`ReactionIntended`). Ledgers written before the outbox
    hold these without an intent, with the payload. Schema version 2 added ``stock``
    (version 1 events take it from the payload).
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


class ReplayLimits(BaseModel):
    """What a limited replay went over: alerts at positions ``since`` to ``until``
    (inclusive), of the ``stocks`` given, decided by the ``channels`` given (None: no
    limit of that kind)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: int | None = None
    until: int | None = None
    stocks: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None


class RunStarted(Event):
    """A run began: the job (hash and text), its units, and the software and host that ran it.

    Schema version 2 added ``units``: every unit the job names, with its role in the job
    (``UnitUse``: an entry's name, a channel's) and its name, version, code digest and
    configuration hash (empty in version 1 events).
    """

    schema_version: ClassVar[int] = 2
    upcasters = {1: lambda data: data | {"units": ()}}
    identity = ("run",)
    unstored_if_none = ("limits",)

    run: str = Field(description="run id")
    job_hash: str
    job_text: str
    packages: dict[str, str] = Field(description="distribution name -> version")
    host: str
    user: str
    argv: tuple[str, ...] = ()
    units: tuple[UnitUse, ...] = Field(default=(), description="the units the job names")
    variant: str | None = Field(
        default=None, description="the variant a replay recorded its output as (None: a run)"
    )
    limits: ReplayLimits | None = Field(
        default=None, description="a limited replay's limits (None: a run, or no limits)"
    )


class RunFinished(Event):
    """A run ended, with its status and summary."""

    identity = ("run",)

    run: str
    status: Literal["ok", "failed units", "failed", "interrupted"] = Field(
        description="ok; failed units: some unit gave up on some input (see the summary); "
        "failed: the run stopped on an error; interrupted: by the user"
    )
    summary: dict[str, Any] = Field(default_factory=dict)


class RunHeartbeat(Event):
    """A live process of a run (a tier worker) was still alive: it appends one every
    ``every_s`` seconds while it runs, so a run whose heartbeats stopped without a
    RunFinished is known to be gone (killed, or its host lost), and when it was last seen."""

    identity = ("run", "beat")

    run: str
    beat: int = Field(ge=1, description="1 for the run's first heartbeat, then 2, 3, ...")
    every_s: float = Field(ge=0.01, description="seconds between the run's heartbeats")


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
    ReactionIntended,
    DeliveryClaimed,
    ReactionIssued,
    RunStarted,
    RunFinished,
    RunHeartbeat,
    ConfigurationRegistered,
)


def rejected(type_name: str, exc: ValidationError) -> EventRejected:
    """Return an EventRejected naming the event type and each offending field."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(event)'}: {err['msg']}" for err in exc.errors()
    )
    return EventRejected(f"invalid {type_name}: {problems}")
