"""The read-model projector: folds ledger events into the ``rm_*`` tables, batch by batch.

rm = ReadModel(readmodel_url(ledger.settings.ledger))
rm.create()
rm.catch_up(ledger)          # from rm.position() + 1 to the ledger's head

Each batch is one transaction that writes every table and the tracking position, so a
crash between batches loses nothing, and events at or below the tracked position are
skipped (re-applying a batch is a no-op). Append-only tables (alerts, decisions,
reactions, configurations, journal) take ``INSERT .. ON CONFLICT DO NOTHING``; tables whose
rows fold several events (stocks, channels, datapoints, states, results, runs, run counts)
read the rows the batch touches once, merge in Python and write them back with ``INSERT ..
ON CONFLICT DO UPDATE``. Each table is written once per batch: on PostgreSQL as a single
statement taking one binary array per column (``unnest``), on SQLite by the driver's
``executemany``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from skyledger.ledger import (
    ConfigError,
    Event,
    Ledger,
    Tracking,
)
from skyledger.ledger.errors import ProjectionError
from skyledger.ledger.rows import conflict
from skyledger.projections import models as m
from skyledger.projections.fold import Fold, Row, json_text, position_of, table_of
from skyledger.projections.projector import Projector, catch_up

__all__ = ["Fold", "ReadModel", "ReadModelProjector", "make_engine", "readmodel_url"]

Progress = Callable[[int, int], None]
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_WRITE = "skyledger_write"  # execution option: take SQLite's write lock at BEGIN


def readmodel_url(ledger_url: str) -> str:
    """Return the SQLAlchemy URL of the database a ledger URL names (the read model's default)."""
    parts = urlsplit(ledger_url)
    if parts.scheme == "sqlite":
        return ledger_url
    if parts.scheme in _PG_SCHEMES:
        query = parse_qs(parts.query)
        schema = query.pop("schema", None)
        if schema:
            query["options"] = [f"-csearch_path={schema[0]}"]
        return parts._replace(scheme="postgresql+psycopg", query=urlencode(query, True)).geturl()
    msg = f"read model: unknown store {parts.scheme!r} in ledger URL; use sqlite or postgresql"
    raise ConfigError(msg)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_sqlite_begin)
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _on_sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """Return an engine for a read-model URL, with real transactions on SQLite."""
    options: Row = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **options)


class ReadModelProjector(Projector):
    """The read model's projector: every event, handed as it is to the read model's view
    (:class:`ReadModel`), which folds it into its tables with the position."""

    name = "readmodel"

    def __init__(self, batch_size: int = 5000) -> None:
        self.batch_size = batch_size

    def process(self, events: Sequence[Event], bound: int) -> Sequence[Event]:
        """Return the events themselves: the view folds them."""
        return events


class ReadModel:
    """The ``rm_*`` tables of one database: the read model's view, with its position."""

    name = "readmodel"  # its row in rm_tracking

    def __init__(self, engine_url: str) -> None:
        self.engine = make_engine(engine_url)
        self._writer = self.engine.execution_options(**{_WRITE: True})

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def __enter__(self) -> ReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        """Create the tables that are missing and this projection's tracking row; tables
        of another shape (an older skyledger's) are dropped first, and the model is then
        rebuilt from the ledger by the next catch-up."""
        with self._writer.begin() as conn:
            if not self._same_shape(conn):
                m.METADATA.drop_all(conn)
            m.METADATA.create_all(conn)
            self._add_missing_indexes(conn)
            Fold(conn).insert(m.Tracking, [{"name": self.name, "position": 0}])

    @staticmethod
    def _add_missing_indexes(conn: Connection) -> None:
        """Create the indexes a table made by an older skyledger lacks (its rows stay)."""
        found = inspect(conn)
        for table in m.METADATA.sorted_tables:
            have = {i["name"] for i in found.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in have:
                    index.create(conn)

    @staticmethod
    def _same_shape(conn: Connection) -> bool:
        """Return False if a read-model table exists with other columns than ours, or if
        some of our tables exist and others not (an older skyledger's model, which a new
        table would join empty)."""
        found = inspect(conn)
        present = 0
        for table in m.METADATA.sorted_tables:
            if found.has_table(table.name):
                present += 1
                columns = {c["name"] for c in found.get_columns(table.name)}
                if columns != {c.name for c in table.columns}:
                    return False
        return present in (0, len(m.METADATA.sorted_tables))

    def drop(self) -> None:
        """Drop every read-model table (the ledger's tables are left alone)."""
        with self._writer.begin() as conn:
            m.METADATA.drop_all(conn)

    def position(self, name: str = "readmodel") -> int:
        """Return the ledger position up to which the read model is built (0 if never)."""
        with self.engine.connect() as conn:
            return self._position(conn) or 0

    def _position(self, conn: Connection, lock: bool = False) -> int | None:
        table = table_of(m.Tracking)
        query = select(table.c.position).where(table.c.name == self.name)
        if lock:
            query = query.with_for_update()  # PostgreSQL: one projector at a time
        found = conn.execute(query).scalar_one_or_none()
        return None if found is None else int(found)

    def apply(self, events: Sequence[Event]) -> None:
        """Fold events into the tables and move the tracking position, in one transaction.

        Events at or below the tracked position are skipped.
        """
        self._apply(events)

    def _apply(self, events: Sequence[Event], after: int | None = None) -> int:
        """Apply a batch; ``after`` is the position the batch follows on from, and the batch
        is refused if the tracked position is behind it (something else reset the model)."""
        if any(e.position is None for e in events):
            msg = f"read model {self.name!r}: events must come from the ledger (no position)"
            raise ProjectionError(msg)
        try:
            with self._writer.begin() as conn:
                tracked = self._position(conn, lock=True)
                if tracked is None:
                    msg = f"read model {self.name!r} has no tracking row: call create() first"
                    raise ProjectionError(msg)
                if after is not None and tracked < after:
                    msg = (
                        f"read model {self.name!r} is at position {tracked}, behind {after} "
                        "where this batch follows on (was it dropped meanwhile?)"
                    )
                    raise ProjectionError(msg)
                fresh = sorted((e for e in events if position_of(e) > tracked), key=position_of)
                if not fresh:
                    return 0
                Fold(conn).apply(fresh)
                table = table_of(m.Tracking)
                done = update(table).where(table.c.name == self.name)
                conn.execute(done.values(position=position_of(fresh[-1])))
        except SQLAlchemyError as exc:
            span = f"{position_of(events[0])}..{position_of(events[-1])}" if events else "(none)"
            msg = f"read model {self.name!r}: applying positions {span} failed: {exc}"
            raise ProjectionError(msg) from exc
        return len(fresh)

    def record(self, events: Sequence[Event], tracking: Tracking | None) -> int:
        """Fold a batch of the ledger's events and move the position from
        ``tracking.after`` to ``tracking.position``, in one transaction (the view of
        :class:`ReadModelProjector`); raise TrackingConflict if the position was not
        ``tracking.after`` (another process caught up meanwhile, or reset the model)."""
        if tracking is None:  # its projector never puts work off
            raise ProjectionError(f"read model {self.name!r}: a fold always moves the position")
        if any(e.position is None for e in events):
            msg = f"read model {self.name!r}: events must come from the ledger (no position)"
            raise ProjectionError(msg)
        try:
            with self._writer.begin() as conn:
                tracked = self._position(conn, lock=True)
                if tracked is None:
                    msg = f"read model {self.name!r} has no tracking row: call create() first"
                    raise ProjectionError(msg)
                if tracked != tracking.after:
                    raise conflict(tracking, tracked)
                Fold(conn).apply(sorted(events, key=position_of))
                table = table_of(m.Tracking)
                done = update(table).where(table.c.name == self.name)
                conn.execute(done.values(position=tracking.position))
        except SQLAlchemyError as exc:
            span = f"{tracking.after + 1}..{tracking.position}"
            msg = f"read model {self.name!r}: applying positions {span} failed: {exc}"
            raise ProjectionError(msg) from exc
        return len(events)

    def catch_up(
        self, ledger: Ledger, batch_size: int = 5000, progress: Progress | None = None
    ) -> int:
        """Fold the ledger's events after the tracked position, in batches, each with the
        position in one transaction; return how many. ``progress(position, head)`` is
        called after each batch."""
        done = catch_up(ledger, ReadModelProjector(batch_size), self, progress=progress)
        return done.stored

    def digest(self) -> str:
        """Return a digest of every table's rows but the tracking row (BLAKE2b of their
        canonical JSON, in primary-key order): two read models hold the same rows
        exactly when their digests are equal, whichever database they are in."""
        hasher = blake2b(digest_size=16)
        tracking = table_of(m.Tracking).name
        with self.engine.connect() as conn:
            for table in sorted(m.METADATA.sorted_tables, key=lambda t: t.name):
                if table.name == tracking:
                    continue
                hasher.update(table.name.encode() + b"\x00")
                keys = list(table.primary_key.columns) or list(table.columns)
                for row in conn.execute(select(table).order_by(*keys)).mappings():
                    hasher.update(orjson.dumps(
                        {k: _plain(v) for k, v in row.items()}, option=orjson.OPT_SORT_KEYS
                    ) + b"\n")  # fmt: skip
        return hasher.hexdigest()

    def rebuild(self, ledger: Ledger, progress: Progress | None = None) -> int:
        """Drop and recreate the tables and replay the whole ledger; return how many events."""
        self.drop()
        self.create()
        return self.catch_up(ledger, progress=progress)


def _plain(value: Any) -> Any:
    """Return a column value as the same JSON whichever database returned it."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    return value
