"""The read models: SQLAlchemy tables (prefixed ``rm_``) that the ledger projects into.

They live in their own ``MetaData`` (:data:`METADATA`), so they are created and dropped as a
set beside the ledger's ``skyledger_events*`` tables in the same database. Every row can be
rebuilt from the ledger; ``position`` columns hold the ledger position of the event that
last wrote the row, ``event_id`` its id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    Index,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "METADATA",
    "Alert",
    "Base",
    "ChannelPolicy",
    "Config",
    "Datapoint",
    "Decision",
    "Grant",
    "JournalEntry",
    "Rank",
    "Reaction",
    "Result",
    "Run",
    "RunCount",
    "RunDatapoints",
    "State",
    "StateChannel",
    "Stock",
    "StockChannel",
    "StockProgramme",
    "Token",
    "Tracking",
    "table_of",
]

METADATA = MetaData()
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Return the value in UTC (naive for SQLite, which keeps no offset)."""
        if value is None:
            return None
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Return the stored value as an aware UTC datetime."""
        if value is None:
            return None
        stored: dt.datetime = value
        if stored.tzinfo is None:
            return stored.replace(tzinfo=dt.UTC)
        return stored.astimezone(dt.UTC)


def _key(**kw: Any) -> Any:
    """Return a primary-key column (never autoincrementing)."""
    return mapped_column(primary_key=True, autoincrement=False, **kw)


class Base(DeclarativeBase):
    """Declarative base of the read-model tables, bound to :data:`METADATA`."""

    metadata = METADATA
    type_annotation_map = {
        int: BigInteger,
        float: Double,
        str: String,
        dt.datetime: UTCDateTime,
        dict[str, Any]: Json,
        list[Any]: Json,
    }


class Stock(Base):
    """One stock: where it appears in the ledger, how many alerts and datapoints it has, and
    where it is on the sky: the mean direction of its detections (``ra``, ``dec`` in
    degrees; ``pos_x/y/z`` the sum of their unit vectors in units of 2**-40, ``pos_n``
    how many) and its
    HEALPix cell at depth 29, nested scheme (``hpx``: the index cone searches use)."""

    __tablename__ = "rm_stocks"
    __table_args__ = (
        Index("rm_stocks_last_position", "last_position"),
        Index("rm_stocks_hpx", "hpx"),
    )

    stock: Mapped[str] = _key()
    first_position: Mapped[int]
    last_position: Mapped[int]
    first_time: Mapped[dt.datetime]
    last_time: Mapped[dt.datetime]
    n_alerts: Mapped[int] = mapped_column(default=0)
    n_detections: Mapped[int] = mapped_column(default=0)
    n_upper_limits: Mapped[int] = mapped_column(default=0)
    n_forced: Mapped[int] = mapped_column(default=0)
    n_other: Mapped[int] = mapped_column(default=0)
    ra: Mapped[float | None] = mapped_column(default=None)
    dec: Mapped[float | None] = mapped_column(default=None)
    hpx: Mapped[int | None] = mapped_column(default=None)
    pos_x: Mapped[int] = mapped_column(default=0)
    pos_y: Mapped[int] = mapped_column(default=0)
    pos_z: Mapped[int] = mapped_column(default=0)
    pos_n: Mapped[int] = mapped_column(default=0)


class StockChannel(Base):
    """A channel that follows a stock: the distinct alerts it accepted, first and last."""

    __tablename__ = "rm_stock_channels"
    __table_args__ = (Index("rm_stock_channels_channel", "channel", "stock"),)

    stock: Mapped[str] = _key()
    channel: Mapped[str] = _key()
    accepted_alerts: Mapped[int]
    first_accepted_position: Mapped[int]
    last_accepted_position: Mapped[int]


class StockProgramme(Base):
    """A survey programme (ZTF ``programid``) a stock's datapoints carry, from the first
    such datapoint's position: who may see the stock follows (``projections.rights``)."""

    __tablename__ = "rm_stock_programids"

    stock: Mapped[str] = _key()
    programid: Mapped[int] = _key()
    first_position: Mapped[int]


class Datapoint(Base):
    """A stock's datapoint as last measured, with the normalised photometry pulled out."""

    __tablename__ = "rm_datapoints"
    __table_args__ = (Index("rm_datapoints_id", "datapoint_id"),)

    stock: Mapped[str] = _key()
    datapoint_id: Mapped[str] = _key()
    kind: Mapped[str]
    jd: Mapped[float | None]
    band: Mapped[str | None]
    mag: Mapped[float | None]
    magerr: Mapped[float | None]
    flux: Mapped[float | None]
    fluxerr: Mapped[float | None]
    limmag: Mapped[float | None]
    body: Mapped[dict[str, Any]]
    event_id: Mapped[str]
    position: Mapped[int]
    first_position: Mapped[int]  # of its first event: when the ledger learnt of it
    first_alert: Mapped[str | None]  # the alert whose packet brought it first
    superseded_count: Mapped[int] = mapped_column(default=0)


class Alert(Base):
    """A received packet (``error`` set when it could not be read)."""

    __tablename__ = "rm_alerts"
    __table_args__ = (
        Index("rm_alerts_stock", "stock"),
        Index("rm_alerts_digest", "digest"),
        Index("rm_alerts_run", "run_id"),
    )

    event_id: Mapped[str] = _key()
    stock: Mapped[str]
    digest: Mapped[str]
    source: Mapped[str]
    locator: Mapped[str]
    alert_id: Mapped[str | None]
    schema_name: Mapped[str | None]
    error: Mapped[str | None]
    position: Mapped[int]
    time: Mapped[dt.datetime]
    run_id: Mapped[str | None]


class Decision(Base):
    """A channel's filter decision on an alert."""

    __tablename__ = "rm_decisions"
    __table_args__ = (
        Index("rm_decisions_stock", "stock", "channel", "alert_digest"),
        Index("rm_decisions_alert", "alert"),
    )

    event_id: Mapped[str] = _key()
    stock: Mapped[str]
    channel: Mapped[str]
    alert_digest: Mapped[str]
    alert: Mapped[str | None]
    autocomplete: Mapped[bool]
    accepted: Mapped[bool]
    code: Mapped[int | None]
    group: Mapped[int | None]
    reason: Mapped[str]
    unit: Mapped[str]
    config: Mapped[str]
    position: Mapped[int]
    time: Mapped[dt.datetime]
    run_id: Mapped[str | None]


class State(Base):
    """A state one combiner configuration made of a stock at an alert, and the channels
    that accepted that alert."""

    __tablename__ = "rm_states"
    __table_args__ = (
        Index("rm_states_stock", "stock", "until"),
        Index("rm_states_state", "state_id"),
    )

    event_id: Mapped[str] = _key()
    state_id: Mapped[str]
    bodies: Mapped[str]
    alert: Mapped[str | None]
    alert_position: Mapped[int | None]
    unit: Mapped[str]
    config: Mapped[str]
    unit_version: Mapped[str]
    stock: Mapped[str]
    datapoint_ids: Mapped[list[Any]]
    n_datapoints: Mapped[int]
    channels: Mapped[list[Any]]
    position: Mapped[int]
    time: Mapped[dt.datetime]
    until: Mapped[float | None]  # the time the combiner cut it at (its alert's)
    set_aside: Mapped[dict[str, Any] | None]  # datapoints left out, by reason
    late: Mapped[int] = mapped_column(default=0)
    """Datapoints observed by ``until`` that reached the ledger after the state's alert:
    the state lacks them because they came late, not because the combiner chose so."""


class StateChannel(Base):
    """A channel that accepted an alert a state was made at (a state made at alerts of
    several channels has a row for each), from the first such state's position: the
    results about a state belong to these channels."""

    __tablename__ = "rm_state_channels"
    __table_args__ = (Index("rm_state_channels_channel", "channel", "state_id"),)

    state_id: Mapped[str] = _key()
    channel: Mapped[str] = _key()
    position: Mapped[int]


class Rank(Base):
    """A stock's latest result of one T2 unit configuration in one channel, by one of the
    paths the unit ranks by (``T2Unit.ranks``), with its value there (None: not a
    number in that result): a channel's stocks ranked by a value, through an index.
    ``channel`` is ``""`` for results about no state (they follow their stock)."""

    __tablename__ = "rm_ranks"
    __table_args__ = (
        Index("rm_ranks_top", "unit", "unit_version", "unit_digest", "config", "channel",
              "path", "value", "result_id"),
        Index("rm_ranks_position", "position"),
    )  # fmt: skip

    unit: Mapped[str] = _key()
    unit_version: Mapped[str] = _key()
    unit_digest: Mapped[str] = _key()
    config: Mapped[str] = _key()
    channel: Mapped[str] = _key()
    path: Mapped[str] = _key()
    stock: Mapped[str] = _key()
    value: Mapped[float | None]
    result_id: Mapped[str]
    position: Mapped[int]


class Result(Base):
    """A T2 result: ``ok`` with its body once derived, else ``failed`` with the last error."""

    __tablename__ = "rm_results"
    __table_args__ = (Index("rm_results_stock", "stock"), Index("rm_results_subject", "subject"))

    result_id: Mapped[str] = _key()
    stock: Mapped[str]
    subject: Mapped[str]
    unit: Mapped[str]
    unit_version: Mapped[str]
    unit_digest: Mapped[str]
    config: Mapped[str]
    inputs: Mapped[list[Any]]
    status: Mapped[str]
    body: Mapped[dict[str, Any] | None]
    error: Mapped[str | None]
    traceback: Mapped[str | None]
    attempt: Mapped[int | None]
    failures: Mapped[int] = mapped_column(default=0)
    retry_after_s: Mapped[float | None]
    event_id: Mapped[str]
    position: Mapped[int]
    time: Mapped[dt.datetime]
    duration_s: Mapped[float]


class Reaction(Base):
    """A reaction a T3 unit intended, and how its delivery stands: ``intended`` (not yet
    tried), ``claimed`` (an attempt began, no outcome yet), ``delivered`` or ``failed``."""

    __tablename__ = "rm_reactions"
    __table_args__ = (Index("rm_reactions_stock", "stock"),)

    idempotency_key: Mapped[str] = _key()
    stock: Mapped[str | None]  # see projections.fold.stock_of
    unit: Mapped[str]
    config: Mapped[str]
    target: Mapped[str]
    status: Mapped[str]
    attempts: Mapped[int]
    detail: Mapped[str]
    payload: Mapped[dict[str, Any]]
    event_id: Mapped[str]  # the intent (or, in ledgers before the outbox, the first attempt)
    position: Mapped[int]
    time: Mapped[dt.datetime]
    run_id: Mapped[str | None]
    last_position: Mapped[int]
    channels: Mapped[list[Any] | None]  # None: not recorded (ledgers before 0.5)


class Run(Base):
    """A run: its job, software and host when started, when last seen alive (live
    processes' heartbeats), its status and summary when finished."""

    __tablename__ = "rm_runs"

    run_id: Mapped[str] = _key()
    job_hash: Mapped[str | None]
    job_name: Mapped[str | None]
    variant: Mapped[str | None]
    job_text: Mapped[str | None]
    packages: Mapped[dict[str, Any] | None]
    argv: Mapped[list[Any] | None]
    host: Mapped[str | None]
    user: Mapped[str | None]
    started: Mapped[dt.datetime | None]
    finished: Mapped[dt.datetime | None]
    status: Mapped[str]
    summary: Mapped[dict[str, Any] | None]
    units: Mapped[list[Any] | None]
    start_position: Mapped[int | None]
    finish_position: Mapped[int | None]
    last_seen: Mapped[dt.datetime | None]
    """When a process of the run was last known alive: its start, its last heartbeat."""
    heartbeat_s: Mapped[float | None]
    """Seconds between its heartbeats (None: a run that sends none, such as a local run)."""


class RunDatapoints(Base):
    """What a run's datapoint events added, by kind: datapoints new to their stock, and
    new bodies of datapoints their stock had (a re-measurement, a repeat with fewer
    fields)."""

    __tablename__ = "rm_run_datapoints"

    run_id: Mapped[str] = _key()
    kind: Mapped[str] = _key()
    new: Mapped[int]
    new_bodies: Mapped[int]


class RunCount(Base):
    """How many events of one type a run recorded in the ledger."""

    __tablename__ = "rm_run_counts"

    run_id: Mapped[str] = _key()
    event_type: Mapped[str] = _key()
    count: Mapped[int]


class Config(Base):
    """A registered unit configuration, by its content hash."""

    __tablename__ = "rm_configs"

    config_hash: Mapped[str] = _key()
    unit: Mapped[str]
    config: Mapped[dict[str, Any]]
    position: Mapped[int]


class JournalEntry(Base):
    """One line of a stock's journal: an event that concerns it, summarised."""

    __tablename__ = "rm_journal"

    stock: Mapped[str] = _key()
    position: Mapped[int] = _key()
    event_id: Mapped[str]
    event_type: Mapped[str]
    time: Mapped[dt.datetime]
    run_id: Mapped[str | None]
    summary: Mapped[str]
    subject: Mapped[str | None]  # what the line is about: a datapoint, state, result or
    # reaction id, a decision's channel (who may see the line follows from it)


class Grant(Base):
    """A member's access to a channel: granted at a position (by whom), and revoked at a
    later one if it was (a grant after a revocation starts again)."""

    __tablename__ = "rm_grants"
    __table_args__ = (Index("rm_grants_member", "member"),)

    channel: Mapped[str] = _key()
    member: Mapped[str] = _key()
    granted_position: Mapped[int]
    granted_by: Mapped[str]
    revoked_position: Mapped[int | None]
    revoked_by: Mapped[str | None]


class ChannelPolicy(Base):
    """A channel's reading policy: public or members only, and its readers' ZTF programids
    (None: all)."""

    __tablename__ = "rm_channel_policies"

    channel: Mapped[str] = _key()
    public: Mapped[bool]
    programids: Mapped[list[Any] | None]
    position: Mapped[int]
    set_by: Mapped[str]


class Token(Base):
    """A personal access token (its secret's digest only): owner, channels, expiry, and
    the position it was revoked at, if it was."""

    __tablename__ = "rm_tokens"
    __table_args__ = (Index("rm_tokens_owner", "owner"),)

    token_id: Mapped[str] = _key()
    digest: Mapped[str]
    owner: Mapped[str]
    name: Mapped[str]
    channels: Mapped[list[Any] | None]
    expires: Mapped[dt.datetime]
    issued_position: Mapped[int]
    issued_by: Mapped[str]
    revoked_position: Mapped[int | None]
    revoked_by: Mapped[str | None]
    identities: Mapped[list[Any] | None]


class Tracking(Base):
    """The ledger position up to which a projection has been applied."""

    __tablename__ = "rm_tracking"

    name: Mapped[str] = _key()
    position: Mapped[int]


def table_of(model: type[Base]) -> Table:
    """Return a model's table."""
    return cast(Table, model.__table__)
