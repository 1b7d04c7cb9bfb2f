"""Reads of the read model for the CLI and HTTP: a stock's whole view, stock lists, runs.

Each function takes a :class:`~projections.readmodel.ReadModel` (it opens a connection) or
an open SQLAlchemy ``Connection`` or ``Session`` (to read inside a transaction of your own),
and returns frozen pydantic models, ready to print or to serve as JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Select, func, select
from sqlalchemy.orm import Session

from skyledger.projections import models as m
from skyledger.projections.readmodel import ReadModel

__all__ = [
    "UPPER_LIMIT",
    "ChannelRow",
    "ConfigRow",
    "DatapointRow",
    "JournalRow",
    "ReactionRow",
    "ResultRow",
    "RunFacts",
    "RunView",
    "Source",
    "StateRow",
    "StockRow",
    "StockView",
    "event_ids_of",
    "failed_results",
    "find_configs",
    "list_runs",
    "reading",
    "rows_of",
    "run_facts",
    "run_summary",
    "stock_rows",
    "stock_view",
]

Source = ReadModel | Connection | Session
_IN_CHUNK = 2000


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class StockRow(_Row):
    """A stock: its span in the ledger, its counts and the channels that follow it."""

    stock: str
    first_position: int
    last_position: int
    first_time: dt.datetime
    last_time: dt.datetime
    n_alerts: int
    n_detections: int
    n_upper_limits: int
    n_forced: int
    n_other: int
    ra: float | None = None
    dec: float | None = None
    channels: tuple[str, ...] = ()


class ChannelRow(_Row):
    """A channel following a stock: the distinct alerts it accepted, first and last."""

    channel: str
    accepted_alerts: int
    first_accepted_position: int
    last_accepted_position: int


class DatapointRow(_Row):
    """A datapoint as last measured, and how many times it was re-measured."""

    datapoint_id: str
    kind: str
    jd: float | None
    band: str | None
    mag: float | None
    magerr: float | None
    flux: float | None
    fluxerr: float | None
    limmag: float | None
    body: dict[str, Any]
    event_id: str
    position: int
    first_position: int
    first_alert: str | None
    superseded_count: int


class StateRow(_Row):
    """A state one combiner configuration made at an alert, and the channels that
    accepted the alert."""

    state_id: str
    bodies: str
    alert: str | None
    alert_position: int | None
    unit: str
    unit_version: str
    config: str
    datapoint_ids: tuple[str, ...]
    n_datapoints: int
    channels: tuple[str, ...]
    event_id: str
    position: int
    time: dt.datetime
    until: float | None = Field(
        None, description="the time (JD) the combiner cut the state at: its alert's"
    )
    set_aside: dict[str, int] | None = Field(
        None, description="datapoints known at the alert that the combiner left out, by reason"
    )
    late: int = Field(
        0,
        description="datapoints observed by `until` that reached the ledger only after the "
        "alert (in the history of a packet received later): the state lacks them",
    )


class ResultRow(_Row):
    """A T2 result: ``ok`` with its body, or ``failed`` with the latest error."""

    result_id: str
    stock: str
    subject: str
    unit: str
    unit_version: str
    config: str
    inputs: tuple[str, ...]
    status: str
    body: dict[str, Any] | None
    error: str | None
    traceback: str | None
    attempt: int | None
    failures: int
    retry_after_s: float | None
    event_id: str
    position: int
    time: dt.datetime
    duration_s: float
    unit_digest: str
    entries: tuple[str, ...] = ()  # the job entries (t2 names) that ran this configuration
    config_values: dict[str, Any] | None = None  # the registered configuration
    state_alert_position: int | None = None  # where the subject state was made, if a state
    value: float | None = None  # the value a listing sorted or filtered by

    def key(self) -> tuple[str, str, str, str]:
        """Return the identity of the unit that made it: name, version, code, configuration."""
        return (self.unit, self.unit_version, self.unit_digest, self.config)


class ReactionRow(_Row):
    """An intended reaction and how its delivery stands."""

    idempotency_key: str
    stock: str | None = None  # the stock it is about (None: several, as a report)
    unit: str
    config: str
    target: str
    status: str
    attempts: int
    detail: str
    payload: dict[str, Any]
    event_id: str
    position: int
    time: dt.datetime
    run_id: str | None
    channels: tuple[str, ...] | None = None


class JournalRow(_Row):
    """One line of a stock's journal."""

    position: int
    event_id: str
    event_type: str
    time: dt.datetime
    run_id: str | None
    summary: str
    subject: str | None = None


UPPER_LIMIT = "upper_limit"
"""The kind of a datapoint that is an upper limit (no detection: ``limmag`` only)."""


class StockView(_Row):
    """Everything the read model knows of one stock (datapoints by jd, the rest by
    position): ``datapoints`` holds its measurements (detections, forced photometry and
    any other kind), ``upper_limits`` its upper limits, apart."""

    stock: StockRow
    channels: tuple[ChannelRow, ...]
    datapoints: tuple[DatapointRow, ...]
    upper_limits: tuple[DatapointRow, ...]
    states: tuple[StateRow, ...]
    results: tuple[ResultRow, ...]
    reactions: tuple[ReactionRow, ...]
    journal: tuple[JournalRow, ...]


class ConfigRow(_Row):
    """A registered unit configuration."""

    config_hash: str
    unit: str
    config: dict[str, Any]
    position: int


GONE_AFTER_BEATS = 3
"""A running run whose last heartbeat is older than this many intervals is ``gone``."""


class RunView(_Row):
    """A run: its job and host, status and summary, and the events it recorded by type.

    ``status`` is ``gone`` for a run without a RunFinished whose heartbeats stopped more
    than :data:`GONE_AFTER_BEATS` intervals ago (its process was killed, or its host
    lost); ``last_seen`` says when it was last known alive."""

    run_id: str
    job_hash: str | None
    job_name: str | None = None
    variant: str | None = None
    job_text: str | None
    packages: dict[str, Any] | None
    argv: tuple[str, ...] | None
    host: str | None
    user: str | None
    started: dt.datetime | None
    finished: dt.datetime | None
    status: str
    summary: dict[str, Any] | None
    units: list[Any] | None
    start_position: int | None
    finish_position: int | None
    last_seen: dt.datetime | None = None
    heartbeat_s: float | None = None
    counts: dict[str, int]


@contextmanager
def reading(source: Source) -> Iterator[Connection | Session]:
    """Yield the connection to read with: a read model's reads see one snapshot (a
    connection or session given is used as it is)."""
    if not isinstance(source, ReadModel):
        yield source
        return
    with source.engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # SQLite transactions are snapshots already
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


def rows_of(conn: Connection | Session, query: Select[Any]) -> list[dict[str, Any]]:
    """Return a query's rows as dicts."""
    result = conn.execute(query)
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def _channels(conn: Connection | Session, stocks: Sequence[str]) -> dict[str, list[str]]:
    table = m.StockChannel.__table__
    found: dict[str, list[str]] = {}
    for start in range(0, len(stocks), _IN_CHUNK):
        chunk = stocks[start : start + _IN_CHUNK]
        query = select(table.c.stock, table.c.channel).where(table.c.stock.in_(chunk))
        for stock, channel in conn.execute(query.order_by(table.c.stock, table.c.channel)):
            found.setdefault(stock, []).append(channel)
    return found


def event_ids_of(source: Source, ident: str) -> list[str]:
    """Return the ids of the events recording a state id, a datapoint id or a survey's
    alert id (for ``skyledger why``; the ledger finds the other ids itself)."""
    queries = [
        select(m.State.event_id).where(m.State.state_id == ident),
        select(m.Datapoint.event_id).where(m.Datapoint.datapoint_id == ident),
        select(m.Alert.event_id).where(m.Alert.alert_id == ident),
    ]
    with reading(source) as conn:
        return [str(i) for q in queries for i in conn.execute(q).scalars()]


def stock_view(source: Source, stock: str) -> StockView | None:
    """Return one stock's row, channels, datapoints, states, results, reactions and journal."""
    with reading(source) as conn:
        found = rows_of(conn, select(m.Stock.__table__).where(m.Stock.stock == stock))
        if not found:
            return None
        dps = select(m.Datapoint.__table__).where(m.Datapoint.stock == stock)
        channels = select(m.StockChannel.__table__).where(m.StockChannel.stock == stock)
        states = select(m.State.__table__).where(m.State.stock == stock)
        results = select(m.Result.__table__).where(m.Result.stock == stock)
        reactions = select(m.Reaction.__table__).where(m.Reaction.stock == stock)
        journal = select(m.JournalEntry.__table__).where(m.JournalEntry.stock == stock)
        by_jd = m.Datapoint.jd.asc().nulls_last()
        state_rows = rows_of(conn, states.order_by(m.State.position))
        followers = tuple(
            ChannelRow(**r) for r in rows_of(conn, channels.order_by(m.StockChannel.channel))
        )
        points = [
            DatapointRow(**r) for r in rows_of(conn, dps.order_by(by_jd, m.Datapoint.datapoint_id))
        ]
        return StockView(
            stock=StockRow(**found[0], channels=tuple(c.channel for c in followers)),
            channels=followers,
            datapoints=tuple(d for d in points if d.kind != UPPER_LIMIT),
            upper_limits=tuple(d for d in points if d.kind == UPPER_LIMIT),
            states=tuple(StateRow(**r) for r in state_rows),
            results=_results(conn, rows_of(conn, results.order_by(m.Result.position)), state_rows),
            reactions=tuple(
                ReactionRow(**r) for r in rows_of(conn, reactions.order_by(m.Reaction.position))
            ),
            journal=tuple(
                JournalRow(**r) for r in rows_of(conn, journal.order_by(m.JournalEntry.position))
            ),
        )


def _results(
    conn: Connection | Session, rows: list[dict[str, Any]], states: list[dict[str, Any]]
) -> tuple[ResultRow, ...]:
    """Return result rows with their entry names, configuration values and state."""
    configs = {
        r["config_hash"]: r["config"]
        for r in rows_of(conn, select(m.Config.__table__).where(
            m.Config.config_hash.in_({r["config"] for r in rows})
        ))
    }  # fmt: skip
    names = _entry_names(conn)
    made_at = {s["state_id"]: s["alert_position"] for s in states}
    found = []
    for r in rows:
        key = (r["unit"], r["unit_version"], r["unit_digest"], r["config"])
        found.append(ResultRow(
            **r, entries=tuple(sorted(names.get(key, ()))), config_values=configs.get(r["config"]),
            state_alert_position=made_at.get(r["subject"]),
        ))  # fmt: skip
    return tuple(found)


def _entry_names(conn: Connection | Session) -> dict[tuple[str, str, str, str], set[str]]:
    """Return, for each T2 unit configuration runs named, the entry names they gave it."""
    names: dict[tuple[str, str, str, str], set[str]] = {}
    for units in conn.execute(select(m.Run.units)).scalars():
        for u in units or ():
            role = str(u.get("role", ""))
            if role.startswith("t2:"):
                key = (u["unit"], u["unit_version"], u["unit_digest"], u["config"])
                names.setdefault(key, set()).add(role[3:])
    return names


def _run_view(row: dict[str, Any], counts: dict[str, int], now: dt.datetime | None) -> RunView:
    """Return a run's view, ``gone`` if it is running by the ledger but its heartbeats
    stopped more than GONE_AFTER_BEATS intervals before ``now`` (default: the clock)."""
    every, seen = row.get("heartbeat_s"), row.get("last_seen")
    if row["status"] == "running" and every is not None and seen is not None:
        now = now or dt.datetime.now(dt.UTC)
        if (now - seen).total_seconds() > GONE_AFTER_BEATS * every:
            row = {**row, "status": "gone"}
    return RunView(**row, counts=counts)


def list_runs(
    source: Source,
    limit: int | None = None,
    now: dt.datetime | None = None,
    until: int | None = None,
) -> list[RunView]:
    """Return the runs, the latest first, with the events each recorded by type (a run
    whose heartbeats stopped is ``gone``, as of ``now``: see :class:`RunView`); with
    ``until``, only those started at or before that position (as they stand now:
    :func:`projections.asof.runs_as_of` gives them as they stood then)."""
    runs, counts = m.Run.__table__, m.RunCount.__table__
    order = runs.c.start_position.desc().nulls_last()
    query = select(runs).order_by(order, runs.c.run_id).limit(limit)
    if until is not None:
        query = query.where(runs.c.start_position <= until)
    with reading(source) as conn:
        rows = rows_of(conn, query)
        by_run: dict[str, dict[str, int]] = {}
        query = select(counts).where(counts.c.run_id.in_([r["run_id"] for r in rows]))
        for c in rows_of(conn, query):
            by_run.setdefault(c["run_id"], {})[c["event_type"]] = int(c["count"])
    return [_run_view(r, by_run.get(r["run_id"], {}), now) for r in rows]


def failed_results(
    source: Source, stock: str | None = None, run_id: str | None = None, limit: int | None = None
) -> list[ResultRow]:
    """Return the T2 results that failed (given up, or still to be retried), latest first,
    with their error and traceback."""
    table = m.Result.__table__
    query = select(table).where(table.c.status == "failed")
    if stock is not None:
        query = query.where(table.c.stock == stock)
    with reading(source) as conn:
        rows = rows_of(conn, query.order_by(table.c.position.desc()))
        if run_id is not None:
            events = m.JournalEntry.__table__
            mine = set(conn.execute(select(events.c.event_id).where(events.c.run_id == run_id))
                       .scalars())  # fmt: skip
            rows = [r for r in rows if r["event_id"] in mine]
        return list(_results(conn, rows[:limit] if limit else rows, []))


def find_configs(source: Source, prefix: str) -> list[ConfigRow]:
    """Return the registered configurations whose hash starts with ``prefix``."""
    table = m.Config.__table__
    query = select(table).where(table.c.config_hash.startswith(prefix)).order_by(table.c.position)
    with reading(source) as conn:
        return [ConfigRow(**r) for r in rows_of(conn, query.limit(20))]


def stock_rows(
    source: Source, stocks: Sequence[str], channels: frozenset[str] | None = None
) -> dict[str, StockRow]:
    """Return the rows of these stocks that exist, each with the channels that follow it
    (only those in ``channels``, if given)."""
    table = m.Stock.__table__
    found: dict[str, StockRow] = {}
    with reading(source) as conn:
        following = _channels(conn, list(stocks))
        for start in range(0, len(stocks), _IN_CHUNK):
            query = select(table).where(table.c.stock.in_(stocks[start : start + _IN_CHUNK]))
            for r in rows_of(conn, query):
                names = [c for c in following.get(r["stock"], ()) if channels is None
                         or c in channels]  # fmt: skip
                found[r["stock"]] = StockRow(**r, channels=tuple(names))
    return found


class RunFacts(_Row):
    """What a run added to the ledger, as facts: alerts new to it (readable and not), and
    by kind the datapoints new to their stock and the new bodies of datapoints they had."""

    alerts_new: int
    unreadable_new: int
    datapoints: dict[str, dict[str, int]]


def run_facts(source: Source, run_id: str) -> RunFacts:
    """Return what a run added (its events as the read model has folded them)."""
    alerts, points = m.Alert.__table__, m.RunDatapoints.__table__
    with reading(source) as conn:
        found = conn.execute(
            select(alerts.c.error.is_(None), func.count())
            .where(alerts.c.run_id == run_id)
            .group_by(alerts.c.error.is_(None))
        ).all()
        rows = rows_of(conn, select(points).where(points.c.run_id == run_id))
    readable = dict(found)
    return RunFacts(
        alerts_new=int(readable.get(True, 0)),
        unreadable_new=int(readable.get(False, 0)),
        datapoints={
            r["kind"]: {"new": int(r["new"]), "new_bodies": int(r["new_bodies"])}
            for r in sorted(rows, key=lambda r: str(r["kind"]))
        },
    )


def run_summary(source: Source, run_id: str, now: dt.datetime | None = None) -> RunView | None:
    """Return a run's record and how many events of each type it recorded, or None."""
    runs, counts = m.Run.__table__, m.RunCount.__table__
    with reading(source) as conn:
        found = rows_of(conn, select(runs).where(runs.c.run_id == run_id))
        query = select(counts.c.event_type, counts.c.count).where(counts.c.run_id == run_id)
        by_type = {t: int(n) for t, n in conn.execute(query.order_by(counts.c.event_type))}
    if not found:
        return None
    return _run_view(found[0], by_type, now)
