"""Folding ledger events into the read-model tables: one batch at a time, bulk writes.

``Fold(conn).apply(events)`` reads the rows a batch touches once, merges the batch into
them in Python and writes them back with one statement per table (``ON CONFLICT``
upserts; binary arrays on PostgreSQL, ``executemany`` on SQLite). ``ReadModel`` (in
``projections.readmodel``) wraps it in a transaction with the tracking position.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
import yaml
from sqlalchemy import (
    JSON,
    Connection,
    Dialect,
    Double,
    Table,
    any_,
    bindparam,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from skyledger.ledger import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    DeliveryClaimed,
    Event,
    FilterDecided,
    Provenance,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunHeartbeat,
    RunStarted,
    StateCombined,
)
from skyledger.ledger.access import ACCESS_EVENT_TYPES
from skyledger.ledger.errors import ProjectionError
from skyledger.projections import models as m
from skyledger.projections.describe import describe
from skyledger.projections.fold_access import fold_access
from skyledger.projections.fold_late import count_late, mark_late
from skyledger.projections.fold_ranks import fold_ranks
from skyledger.projections.models import table_of
from skyledger.projections.scope import programme_of
from skyledger.projections.sky import cells_of, mean_direction
from skyledger.units.celestial import unit_vector

__all__ = [
    "Fold",
    "fetch",
    "json_text",
    "position_of",
    "stock_of",
    "subject_of",
    "table_of",
]

Row = dict[str, Any]
_CHUNK = 2000  # values per IN (...) when reading the rows a batch touches


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _take(events: Iterator[Event], count: int) -> list[Event]:
    return list(itertools.islice(events, count))


def position_of(event: Event) -> int:
    return event.position or 0


@functools.cache
def _pg_plan(table: Table, overwrite: bool, dialect: Dialect) -> str:
    """Return PostgreSQL's INSERT of a table's rows given as one array per column."""
    quote = dialect.identifier_preparer.quote
    types = [c.type.compile(dialect=dialect) for c in table.columns]
    names = [quote(c.name) for c in table.columns]
    keys = ", ".join(quote(c.name) for c in table.primary_key.columns)
    picks = [f"{n}::{t}" if t == "JSONB" else n for n, t in zip(names, types, strict=True)]
    arrays = ", ".join(f"%b::{'TEXT' if t == 'JSONB' else t}[]" for t in types)
    others = [quote(c.name) for c in table.columns if not c.primary_key]
    action = f"DO UPDATE SET {', '.join(f'{n} = EXCLUDED.{n}' for n in others)}"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(names)}) "
        f"SELECT {', '.join(picks)} FROM unnest({arrays}) AS u({', '.join(names)}) "
        f"ON CONFLICT ({keys}) {action if overwrite else 'DO NOTHING'}"
    )


def _write_postgres(conn: Connection, table: Table, rows: Sequence[Row], overwrite: bool) -> None:
    """Insert rows with one statement taking an array per column (binary parameters)."""
    sql = _pg_plan(table, overwrite, conn.dialect)
    arrays = []
    for column in table.columns:
        values = [row[column.name] for row in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else json_text(v) for v in values]
        elif isinstance(column.type, Double):  # one element type per array
            values = [None if v is None else float(v) for v in values]
        arrays.append(values)
    driver = conn.connection.driver_connection
    if driver is None:
        raise ProjectionError("read model: the PostgreSQL connection is closed")
    with driver.cursor() as cursor:
        cursor.execute(sql, arrays)


@functools.cache
def _sqlite_plan(
    table: Table, overwrite: bool, dialect: Dialect
) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
    """Return SQLite's INSERT for every column of a table, positional, with the names and
    bind processors of its parameters in order (executemany without per-row SQLAlchemy work)."""
    stmt = sqlite_insert(table).values({c.name: bindparam(c.name) for c in table.columns})
    if overwrite:
        keep = {c.name: stmt.excluded[c.name] for c in table.columns if not c.primary_key}
        stmt = stmt.on_conflict_do_update(index_elements=list(table.primary_key), set_=keep)
    else:
        stmt = stmt.on_conflict_do_nothing()
    compiled = stmt.compile(dialect=dialect)
    names = compiled.positiontup or []
    return compiled.string, [(n, table.c[n].type.bind_processor(dialect)) for n in names]


def fetch(conn: Connection, table: Table, column: str, values: Iterable[Any]) -> list[Row]:
    """Return the stored rows whose ``column`` is one of ``values``."""
    wanted = list(dict.fromkeys(values))
    if not wanted:
        return []
    key = table.c[column]
    if conn.dialect.name == "postgresql":  # one array parameter: no long IN list to plan
        match = key == any_(bindparam("wanted", wanted, type_=ARRAY(key.type)))
        return [dict(r) for r in conn.execute(select(table).where(match)).mappings()]
    rows: list[Row] = []
    for start in range(0, len(wanted), _CHUNK):
        query = select(table).where(key.in_(wanted[start : start + _CHUNK]))
        rows += [dict(r) for r in conn.execute(query).mappings()]
    return rows


_REACTION_EVENTS = (ReactionIntended, DeliveryClaimed, ReactionIssued)
_RUN_EVENTS = (RunStarted, RunFinished, RunHeartbeat)
_NOT_STOCK_EVENTS: tuple[type[Event], ...] = (
    *_RUN_EVENTS,
    ConfigurationRegistered,
    *ACCESS_EVENT_TYPES,
)
_NOT_STOCKS = ("run:", "config:", "reaction:", "access:", "token:")
_COUNTS = ("n_alerts", "n_detections", "n_upper_limits", "n_forced", "n_other")
_SUMS = ("pos_x", "pos_y", "pos_z", "pos_n")  # added up like the counts
_UNPLACED = {"ra": None, "dec": None, "hpx": None}
_FIXED = 2**40  # unit vectors in fixed point (1e-12), so that sums are exact
_KIND_COUNT = {"detection": "n_detections", "upper_limit": "n_upper_limits", "forced": "n_forced"}
_NUMBERS = frozenset({int, float})
_PHOTOMETRY = ("jd", "mag", "magerr", "flux", "fluxerr", "limmag")
T = TypeVar("T", bound=Event)


def stock_of(event: Event) -> str | None:
    """Return the stock an event concerns: its stream, or for a reaction its ``stock``;
    None for runs, configurations, unreadable packets and reactions about no one stock."""
    if isinstance(event, ReactionIssued | ReactionIntended):
        return event.stock
    if isinstance(event, _NOT_STOCK_EVENTS) or event.stream.startswith(_NOT_STOCKS):
        return None
    if isinstance(event, AlertReceived) and event.error is not None:
        return None
    return event.stream


def _of(events: Sequence[Event], cls: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, cls)]


def _number(value: Any) -> float | None:
    return float(value) if type(value) in _NUMBERS else None  # not bools, not strings


def _pick(model: Event | Provenance, *names: str) -> Row:
    fields = model.__dict__
    return {name: fields[name] for name in names}


def _row(event: Event, *names: str) -> Row:
    """Return the envelope columns most tables share, plus the named event fields."""
    base = {"event_id": event.id, "stock": event.stream, "position": event.position}
    return base | {"time": event.time} | _pick(event, *names)


class Fold:
    """Writes one batch of fresh events (in position order) into the tables, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.stocks: dict[str, Row] = {}

    def apply(self, events: Sequence[Event]) -> None:
        """Write every table's rows for the batch, then the stocks the batch touched."""
        self.journal(events)
        self.alerts(_of(events, AlertReceived))
        self.datapoints([e for e in _of(events, DatapointAdded) if e.shaper is None])
        self.decisions(_of(events, FilterDecided))
        self.states(_of(events, StateCombined))
        self.results([e for e in events if isinstance(e, ResultDerived | ResultFailed)])
        self.reactions([e for e in events if isinstance(e, _REACTION_EVENTS)])
        self.runs([e for e in events if isinstance(e, _RUN_EVENTS)])
        self.configs(_of(events, ConfigurationRegistered))
        self.run_counts(events)
        fold_access(events, self.fetch, self.upsert)
        self.flush_stocks()

    def fetch(self, model: type[m.Base], column: str, values: Iterable[Any]) -> list[Row]:
        """Return the stored rows of a table whose ``column`` is one of ``values``."""
        return fetch(self.conn, table_of(model), column, values)

    def insert(self, model: type[m.Base], rows: Sequence[Row]) -> None:
        """Insert rows, leaving any already stored alone."""
        self.write(table_of(model), rows, overwrite=False)

    def upsert(self, model: type[m.Base], rows: Sequence[Row]) -> None:
        """Insert rows, or overwrite the stored ones with the same key (keys must not repeat)."""
        self.write(table_of(model), rows, overwrite=True)

    def write(self, table: Table, rows: Sequence[Row], overwrite: bool) -> None:
        """Insert rows with ``ON CONFLICT DO NOTHING`` or ``DO UPDATE``: on PostgreSQL in one
        statement (a column array per parameter), on SQLite through the driver's executemany."""
        if rows and self.conn.dialect.name == "postgresql":
            _write_postgres(self.conn, table, rows, overwrite)
        elif rows:
            sql, columns = _sqlite_plan(table, overwrite, self.conn.dialect)
            params = [tuple(bind(r[n]) if bind else r[n] for n, bind in columns) for r in rows]
            self.conn.exec_driver_sql(sql, params)

    def journal(self, events: Sequence[Event]) -> None:
        """Record each stock event in its stock's journal and its span in the stock's row."""
        rows = []
        for e in events:
            stock = stock_of(e)
            if stock is None:
                continue
            row = self.stocks.get(stock)
            if row is None:
                row = {"stock": stock, "first_position": e.position, "first_time": e.time}
                row |= dict.fromkeys(_COUNTS + _SUMS, 0) | _UNPLACED
                self.stocks[stock] = row
            row.update(last_position=e.position, last_time=e.time)
            entry = {"stock": stock, "event_type": type(e).__name__, "summary": describe(e),
                     "subject": subject_of(e)}  # fmt: skip
            rows.append(_row(e, "run_id") | entry)
        self.insert(m.JournalEntry, rows)

    def alerts(self, events: list[AlertReceived]) -> None:
        """Record received packets (unreadable ones too) and count each stock's alerts."""
        names = ("digest", "source", "locator", "alert_id", "schema_name", "error", "run_id")
        for e in events:
            stock = stock_of(e)
            if stock is not None:
                self.stocks[stock]["n_alerts"] += 1
        self.insert(m.Alert, [_row(e, *names) for e in events])

    def datapoints(self, events: list[DatapointAdded]) -> None:
        """Record datapoints; a re-measured one replaces its row and counts a supersession."""
        if not events:
            return
        seen = {
            (r["stock"], r["datapoint_id"]): (
                r["kind"], r["superseded_count"], r["first_position"], r["first_alert"]
            )
            for r in self.fetch(m.Datapoint, "datapoint_id", (e.datapoint_id for e in events))
        }
        rows: dict[tuple[str, str], Row] = {}
        tally: Counter[tuple[str, str, str]] = Counter()  # (run, kind, new | new_bodies)
        fresh: list[tuple[str, float, int, str | None]] = []  # new: stock, jd, position, alert
        for e in events:
            key = (e.stream, e.datapoint_id)
            prior = seen.get(key)
            if e.run_id is not None:
                tally[(e.run_id, e.kind, "new" if prior is None else "new_bodies")] += 1
            superseded = 0 if prior is None else prior[1] + 1
            if prior is None:
                first, first_alert = e.position, (e.causation[0] if e.causation else None)
            else:
                first, first_alert = prior[2], prior[3]
            stock = stock_of(e)
            if stock is not None:
                counts = self.stocks[stock]
                if prior is not None:
                    counts[_KIND_COUNT.get(prior[0], "n_other")] -= 1
                counts[_KIND_COUNT.get(e.kind, "n_other")] += 1
                if prior is None and e.kind == "detection":
                    _place(counts, e.body)
            seen[key] = (e.kind, superseded, first, first_alert)
            body = e.body
            band = body.get("band")
            row: Row = {name: _number(body.get(name)) for name in _PHOTOMETRY}
            if prior is None and row["jd"] is not None:
                fresh.append((e.stream, row["jd"], position_of(e), first_alert))
            row.update(
                stock=e.stream,
                datapoint_id=e.datapoint_id,
                kind=e.kind,
                band=None if band is None else str(band),
                body=body,
                event_id=e.id,
                position=e.position,
                first_position=first,
                first_alert=first_alert,
                superseded_count=superseded,
            )
            rows[key] = row
        self.upsert(m.Datapoint, list(rows.values()))
        mark_late(self.conn, fresh)
        self.run_datapoints(tally)
        programmes: dict[tuple[str, int], Row] = {}  # the first datapoint of each wins
        for e in events:
            programid = programme_of(e.body)
            if programid is not None and stock_of(e) is not None:
                row = {"stock": e.stream, "programid": programid, "first_position": e.position}
                programmes.setdefault((e.stream, programid), row)
        self.insert(m.StockProgramme, list(programmes.values()))

    def run_datapoints(self, tally: Counter[tuple[str, str, str]]) -> None:
        """Add a batch's datapoint counts to its runs' (new datapoints, new bodies)."""
        rows: dict[tuple[str, str], Row] = {
            (run, kind): {"run_id": run, "kind": kind, "new": 0, "new_bodies": 0}
            for run, kind, _ in tally
        }
        for (run, kind, what), n in tally.items():
            rows[(run, kind)][what] += n
        for stored in self.fetch(m.RunDatapoints, "run_id", {run for run, _ in rows}):
            row = rows.get((stored["run_id"], stored["kind"]))
            if row is not None:
                row["new"] += stored["new"]
                row["new_bodies"] += stored["new_bodies"]
        self.upsert(m.RunDatapoints, list(rows.values()))

    def decisions(self, events: list[FilterDecided]) -> None:
        """Record filter decisions and count the distinct alerts each channel accepted."""
        if not events:
            return
        counted = {
            (r["stock"], r["channel"], r["alert_digest"])
            for r in self.fetch(m.Decision, "alert_digest", (e.alert_digest for e in events))
            if r["accepted"]
        }
        names = ("channel", "alert_digest", "alert", "autocomplete", "accepted", "code", "group",
                 "reason", "run_id")  # fmt: skip
        rows, channels = [], dict[tuple[str, str], Row]()
        for e in events:
            rows.append(_row(e, *names) | _pick(e.provenance, "unit", "config"))
            if not e.accepted:
                continue
            new = {"stock": e.stream, "channel": e.channel, "accepted_alerts": 0}
            row = channels.setdefault((e.stream, e.channel), new)
            row.setdefault("first_accepted_position", e.position)
            row["last_accepted_position"] = e.position
            if (e.stream, e.channel, e.alert_digest) not in counted:
                counted.add((e.stream, e.channel, e.alert_digest))
                row["accepted_alerts"] += 1
        self.insert(m.Decision, rows)
        for stored in self.fetch(m.StockChannel, "stock", (k[0] for k in channels)):
            row = channels.get((stored["stock"], stored["channel"]), {})
            if row:
                row["accepted_alerts"] += stored["accepted_alerts"]
                row["first_accepted_position"] = stored["first_accepted_position"]
        self.upsert(m.StockChannel, list(channels.values()))

    def states(self, events: list[StateCombined]) -> None:
        """Record states, each with the channels that accepted the alert it was made at."""
        if not events:
            return
        channels: dict[str, set[str]] = {}
        for r in self.fetch(m.Decision, "alert", {e.alert for e in events if e.alert}):
            if r["accepted"]:
                channels.setdefault(r["alert"], set()).add(r["channel"])
        rows, followers = [], dict[tuple[str, str], Row]()
        for e in events:
            for channel in sorted(channels.get(e.alert or "", ())):
                key = (e.state_id, channel)
                followers.setdefault(key, {"state_id": e.state_id, "channel": channel,
                                           "position": e.position})  # fmt: skip
            ids = {"datapoint_ids": list(e.datapoint_ids), "n_datapoints": len(e.datapoint_ids)}
            picked = _pick(e.provenance, "unit", "config", "unit_version")
            rows.append(
                _row(e, "state_id", "bodies", "alert", "alert_position", "until", "set_aside")
                | picked | ids | {"channels": sorted(channels.get(e.alert or "", ()))}
            )  # fmt: skip
        count_late(self.conn, rows)
        self.insert(m.State, rows)
        self.insert(m.StateChannel, list(followers.values()))

    def results(self, events: list[ResultDerived | ResultFailed]) -> None:
        """Record T2 results: a derivation makes (and keeps) one ``ok``, a failure records
        the latest error; every event moves the row's event, position, time and duration."""
        if not events:
            return
        rows = {
            r["result_id"]: r
            for r in self.fetch(m.Result, "result_id", (e.result_id for e in events))
        }
        fresh: Row = {"status": "failed", "body": None, "inputs": [], "failures": 0}
        fresh |= dict.fromkeys(("error", "traceback", "attempt", "retry_after_s"))
        touched = {}
        for e in events:
            row = rows.get(e.result_id) or dict(fresh)
            row |= _row(e, "result_id", "subject")
            row |= _pick(e.provenance, "unit", "unit_version", "unit_digest", "config")
            row["duration_s"] = e.provenance.duration_s
            if isinstance(e, ResultDerived):
                row |= {"status": "ok", "body": e.body, "inputs": list(e.inputs)}
            else:
                row |= _pick(e, "error", "traceback", "attempt", "retry_after_s")
                row["failures"] += 1
            rows[e.result_id] = touched[e.result_id] = row
        self.upsert(m.Result, list(touched.values()))
        fold_ranks([e for e in events if isinstance(e, ResultDerived)], self.fetch, self.upsert)

    def reactions(self, events: list[ReactionIntended | DeliveryClaimed | ReactionIssued]) -> None:
        """Record intended reactions, and how each one's delivery stands."""
        if not events:
            return
        rows = {
            r["idempotency_key"]: r
            for r in self.fetch(m.Reaction, "idempotency_key", (e.idempotency_key for e in events))
        }
        touched: dict[str, Row] = {}
        for e in events:
            row = rows.get(e.idempotency_key)
            if row is None:  # an intent, or an attempt recorded before intents were
                if isinstance(e, DeliveryClaimed):
                    continue  # a claim of an intent this model has not seen: skip
                names = ("idempotency_key", "target", "payload", "run_id")
                row = _row(e, *names) | _pick(e.provenance, "unit", "config")
                row |= {"stock": stock_of(e), "status": "intended", "attempts": 0, "detail": ""}
                channels = getattr(e, "channels", None)  # an intent's; attempts record none
                row["channels"] = None if channels is None else list(channels)
            row["last_position"] = e.position
            if isinstance(e, DeliveryClaimed):
                row |= {"status": "claimed", "attempts": max(row["attempts"], e.attempt)}
            elif isinstance(e, ReactionIssued):
                row |= {"status": e.outcome, "attempts": max(row["attempts"], e.attempt)}
                row["detail"] = e.detail
            rows[e.idempotency_key] = touched[e.idempotency_key] = row
        self.upsert(m.Reaction, list(touched.values()))

    def runs(self, events: list[RunStarted | RunFinished | RunHeartbeat]) -> None:
        """Record runs: what started them, when they were last seen alive, how they finished."""
        if not events:
            return
        empty = dict.fromkeys((c.name for c in table_of(m.Run).columns), None)
        rows = {r["run_id"]: r for r in self.fetch(m.Run, "run_id", (e.run for e in events))}
        for e in events:
            row = rows.setdefault(e.run, empty | {"run_id": e.run, "status": "running"})
            if isinstance(e, RunStarted):
                row |= _pick(e, "job_hash", "job_text", "packages", "host", "user", "variant")
                row["job_name"] = _job_name(e.job_text)
                row["units"] = [{"role": u.role} | u.provenance.identity() for u in e.units]
                row |= {"argv": list(e.argv), "started": e.time, "start_position": e.position}
            elif isinstance(e, RunHeartbeat):
                row["heartbeat_s"] = e.every_s
            else:
                row |= _pick(e, "status", "summary")
                row |= {"finished": e.time, "finish_position": e.position}
            seen = row["last_seen"]
            row["last_seen"] = e.time if seen is None else max(seen, e.time)
        self.upsert(m.Run, list(rows.values()))

    def configs(self, events: list[ConfigurationRegistered]) -> None:
        """Record registered unit configurations."""
        names = ("config_hash", "unit", "config")
        self.insert(m.Config, [_pick(e, *names) | {"position": e.position} for e in events])

    def run_counts(self, events: Sequence[Event]) -> None:
        """Count the events of each type each run recorded."""
        counts = Counter((e.run_id, type(e).__name__) for e in events if e.run_id is not None)
        for r in self.fetch(m.RunCount, "run_id", (run for run, _ in counts)):
            key = (r["run_id"], r["event_type"])
            if key in counts:
                counts[key] += r["count"]
        rows = [{"run_id": r, "event_type": t, "count": n} for (r, t), n in counts.items()]
        self.upsert(m.RunCount, rows)

    def flush_stocks(self) -> None:
        """Write the rows of the stocks the batch touched (spans and counts added up)."""
        for stored in self.fetch(m.Stock, "stock", self.stocks):
            row = self.stocks[stored["stock"]]
            row.update(first_position=stored["first_position"], first_time=stored["first_time"])
            for name in _COUNTS + _SUMS:
                row[name] += stored[name]
            row.update(ra=stored["ra"], dec=stored["dec"], hpx=stored["hpx"])
        moved = []
        for row in self.stocks.values():
            found = mean_direction(row["pos_x"], row["pos_y"], row["pos_z"])
            if row["pos_n"] and found is not None and found != (row["ra"], row["dec"]):
                row["ra"], row["dec"] = found
                moved.append(row)
        for row, cell in zip(moved, cells_of([r["ra"] for r in moved],
                                             [r["dec"] for r in moved]), strict=True):  # fmt: skip
            row["hpx"] = cell
        self.upsert(m.Stock, list(self.stocks.values()))


def _job_name(text: str) -> str | None:
    """Return the ``name`` a job's text gives, None if it gives none (or is not YAML)."""
    try:
        job = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = job.get("name") if isinstance(job, dict) else None
    return name if isinstance(name, str) else None


def _place(counts: Row, body: dict[str, Any]) -> None:
    """Add a detection's direction (``ra`` and ``dec`` or ``decl``, degrees) to its stock's."""
    ra, dec = _number(body.get("ra")), _number(body.get("dec", body.get("decl")))
    if ra is None or dec is None or not (-90.0 <= dec <= 90.0) or not math.isfinite(ra):
        return
    for name, value in zip(("pos_x", "pos_y", "pos_z"), unit_vector(ra, dec), strict=True):
        counts[name] += round(value * _FIXED)  # integers: sums in any order are equal
    counts["pos_n"] += 1


def subject_of(e: Event) -> str | None:
    """Return what a journal line is about: the id of a datapoint, state, result or
    reaction, or a decision's channel; None for an alert."""
    if isinstance(e, DatapointAdded):
        return e.datapoint_id
    if isinstance(e, FilterDecided):
        return e.channel
    if isinstance(e, StateCombined):
        return e.state_id
    if isinstance(e, ResultDerived | ResultFailed):
        return e.result_id
    if isinstance(e, _REACTION_EVENTS):
        return e.idempotency_key
    return None
