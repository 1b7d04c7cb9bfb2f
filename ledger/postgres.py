"""The PostgreSQL recorder: eventsourcing's application recorder with a fast idempotent append.

The events table is the library's (``originator_id`` = event id as UUID,
``originator_version`` = 0, ``topic``, ``state``, ``notification_id`` = position) plus a
``stream`` column indexed with the position, so one stock's stream reads in order.

An append takes the library's ``EXCLUSIVE`` table lock (so positions commit in order and
tailing readers never skip a gap) and copies the batch in binary straight into the
table, in a savepoint. If an event of the batch is stored already, the copy fails on its
id; the batch then goes into a temporary staging table and is inserted with ``ON
CONFLICT DO NOTHING``: events already stored are skipped, within a batch, across batches
and across processes. Packet bytes go into
``<table>_packets`` in the same transaction. ``NOTIFY`` wakes followers on commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.copy import LibpqWriter
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from skyledger.ledger.codec import StoredRow
from skyledger.ledger.errors import LedgerError
from skyledger.ledger.rows import (
    AppendResult,
    FetchedRow,
    PreparedBatch,
    Tracking,
    Trackings,
    check_move,
    conflict,
    each_tracking,
)
from skyledger.ledger.shards import Shard

__all__ = ["PostgresLedgerRecorder"]

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_ROW_HEAD = struct.pack("!hi", 5, 16)  # five fields; the first is a 16-byte uuid
_VERSION_AND_LEN = struct.Struct("!iqi").pack  # int8 version (length 8, value 0), topic length
_LEN = struct.Struct("!i").pack


KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}
"""libpq's keepalive settings of the ledger's connections (see PostgresLedgerRecorder)."""


def _columns(alias: str = "") -> str:
    """Return the selected columns: the id as 32 hex digits made by the server (cheaper
    than a Python UUID per row), the state as raw bytes through a binary cursor."""
    a = f"{alias}." if alias else ""
    return (
        f"{a}notification_id, encode(uuid_send({a}originator_id), 'hex'), {a}topic, "
        f"{a}state, {a}stream"
    )


def _fetched(cursor: Any) -> Callable[[Sequence[Any]], FetchedRow]:
    return lambda values: FetchedRow(*values)


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    """Records ledger events in PostgreSQL, idempotently and in batches."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "skyledger_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # TCP keepalives on every connection: a server that vanished (a cut network) is
        # noticed in about 15 s instead of hanging a worker on a read for hours.
        if isinstance(datastore.pool.kwargs, dict) and not KEEPALIVES.items() <= (
            datastore.pool.kwargs.items()
        ):
            datastore.pool.kwargs.update(KEEPALIVES)
            if not datastore.pool.closed:
                datastore.pool.drain()  # connections made before: made again, with them
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        self.packets_table = f"{events_table_name}_packets"
        self._last_created = f'"{datastore.schema}"."{events_table_name}_commits_time_idx"'  # last
        fmt: dict[str, Any] = {
            "schema": schema,
            "table": table,
            "packets": Identifier(self.packets_table),
            "tracking": Identifier(f"{events_table_name}_tracking"),
            "stream_idx": Identifier(f"{events_table_name}_stream_idx"),
            "topic_idx": Identifier(f"{events_table_name}_topic_idx"),
            "commits": Identifier(f"{events_table_name}_commits"),
            "commits_idx": Identifier(f"{events_table_name}_commits_time_idx"),
        }
        create = self.sql_create_statements[self.create_table_statement_index]
        self.sql_create_statements[self.create_table_statement_index] = Composed(
            [
                SQL(
                    create.as_string().replace(
                        "notification_id bigserial, ",
                        "notification_id bigserial, stream text NOT NULL, ",
                    )
                )
            ]
        )
        self.sql_create_statements += [
            SQL(
                "CREATE INDEX IF NOT EXISTS {stream_idx} "
                "ON {schema}.{table} (stream, notification_id)"
            ).format(**fmt),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{tracking} "
                "(name text PRIMARY KEY, position bigint NOT NULL)"
            ).format(**fmt),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{packets} "
                "(digest text PRIMARY KEY, data bytea NOT NULL)"
            ).format(**fmt),
            # Packets are mostly compressed already (gzipped FITS cutouts): storing them
            # without another compression attempt saves the server about a fifth of its
            # work per alert.
            SQL("ALTER TABLE {schema}.{packets} ALTER COLUMN data SET STORAGE EXTERNAL").format(
                **fmt
            ),
            # Reads by event type (a projector's states, results) without scanning the log.
            SQL(
                "CREATE INDEX IF NOT EXISTS {topic_idx} "
                "ON {schema}.{table} (topic, notification_id)"
            ).format(**fmt),
            # Each append's last position and the time, taken under the ordering lock (so
            # in position order): times map to positions (``position_at``).
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{commits} "
                "(position bigint PRIMARY KEY, recorded_at timestamptz NOT NULL)"
            ).format(**fmt),
            SQL(
                "CREATE INDEX IF NOT EXISTS {commits_idx} ON {schema}.{commits} (recorded_at)"
            ).format(**fmt),
        ]
        lock = "; ".join(
            [
                f"SET LOCAL lock_timeout = '{datastore.lock_timeout}s'",
                SQL("LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE").format(**fmt).as_string(),
                SQL("NOTIFY {0}").format(Identifier(self.channel_name)).as_string(),
            ]
        )
        # The fast path: COPY straight into the events table, under the ordering lock,
        # in a savepoint. A duplicate id makes it fail; the batch then goes through the
        # staging table with ON CONFLICT DO NOTHING.
        self._sql_begin_locked = f"BEGIN; {lock}; SAVEPOINT direct"
        self._sql_copy_direct = SQL(
            "COPY {schema}.{table} (originator_id, originator_version, topic, state, stream) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(**fmt)
        self._sql_last_position = SQL(
            "INSERT INTO {schema}.{commits} (position, recorded_at) "
            "SELECT currval(pg_get_serial_sequence('{raw_schema}.{raw_table}', "
            "'notification_id')), clock_timestamp() RETURNING position AS currval"
        ).format(raw_schema=SQL(datastore.schema), raw_table=SQL(events_table_name), **fmt)
        self._sql_commit_at = SQL(
            "INSERT INTO {schema}.{commits} (position, recorded_at) VALUES (%s, clock_timestamp())"
        ).format(**fmt)
        self._sql_position_at = SQL(
            "SELECT max(position) AS position FROM {schema}.{commits} WHERE recorded_at <= %s"
        ).format(**fmt)
        self._sql_staging = (
            "ROLLBACK TO SAVEPOINT direct; "
            "CREATE TEMP TABLE IF NOT EXISTS skyledger_staging (seq bigserial, "
            "originator_id uuid, originator_version int8, topic text, state bytea, stream text) "
            "ON COMMIT DELETE ROWS"
        )
        self._sql_copy = SQL(
            "COPY skyledger_staging (originator_id, originator_version, topic, state, stream) "
            "FROM STDIN (FORMAT BINARY)"
        )
        self._sql_insert = SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state, stream) "
            "SELECT originator_id, originator_version, topic, state, stream "
            "FROM skyledger_staging ORDER BY seq "
            "ON CONFLICT DO NOTHING RETURNING notification_id"
        ).format(**fmt)
        # Tracking moves only from where the projector says it started (see rows.Tracking).
        self._sql_track_first = SQL(
            "INSERT INTO {schema}.{tracking} (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO NOTHING"
        ).format(**fmt)
        self._sql_track_move = SQL(
            "UPDATE {schema}.{tracking} SET position = %s WHERE name = %s AND position = %s"
        ).format(**fmt)
        self._sql_tracked = SQL("SELECT position FROM {schema}.{tracking} WHERE name = %s").format(
            **fmt
        )
        self._sql_tracked_many = SQL(
            "SELECT name, position FROM {schema}.{tracking} WHERE name = ANY(%s)"
        ).format(**fmt)
        self._sql_packets = SQL(
            "INSERT INTO {schema}.{packets} (digest, data) "
            "SELECT * FROM unnest(%s::text[], %b::bytea[]) ON CONFLICT DO NOTHING"
        ).format(**fmt)
        self._sql_select = SQL("SELECT " + _columns() + " FROM {schema}.{table} ").format(**fmt)
        self._sql_get_packet = SQL("SELECT data FROM {schema}.{packets} WHERE digest = %s").format(
            **fmt
        )

    def create_table(self) -> None:
        """Create the tables if missing, one process at a time (CREATE ... IF NOT EXISTS
        races between processes in PostgreSQL, so creation holds an advisory lock)."""
        key = int.from_bytes(
            blake2b(
                f"{self.datastore.schema}.{self.events_table_name}".encode(), digest_size=8
            ).digest(),
            "big",
            signed=True,
        )
        with self.datastore.get_connection() as conn:
            exists = conn.execute("SELECT to_regclass(%s) AS t", [self._last_created]).fetchone()
            if exists is not None and exists["t"] is not None:
                self.datastore.register_type_adapters()
                return  # no DDL on an existing ledger: it would lock out running writers
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                self._create_schema(conn)
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])

    def _create_schema(self, conn: psycopg.Connection[DictRow]) -> None:
        """Create the URL's ``?schema=`` if it does not exist (only then: creating one needs
        a privilege that a user of an existing schema may lack)."""
        schema = Identifier(self.datastore.schema)
        found = conn.execute("SELECT to_regnamespace(%s) AS s", [schema.as_string(conn)]).fetchone()
        if found is None or found["s"] is None:
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))

    def prepare(self, rows: Sequence[StoredRow]) -> PreparedBatch:
        """Return the rows as one binary COPY payload (all the per-row Python work)."""
        parts = [_COPY_HEADER]
        append = parts.append
        for row in rows:
            topic, stream = row.topic.encode(), row.stream.encode()
            append(_ROW_HEAD)
            append(bytes.fromhex(row.id))
            append(_VERSION_AND_LEN(8, 0, len(topic)))
            append(topic)
            append(_LEN(len(row.state)))
            append(row.state)
            append(_LEN(len(stream)))
            append(stream)
        parts.append(_COPY_TRAILER)
        return PreparedBatch(len(rows), b"".join(parts))

    def write(
        self,
        batch: PreparedBatch,
        packets: Sequence[tuple[str, bytes]] = (),
        tracking: Trackings = None,
    ) -> AppendResult:
        """Store a prepared batch's new rows, in order, in one transaction (see module doc),
        with the tracking positions given (moves of projectors' positions)."""
        moves = each_tracking(tracking)
        if not batch.count and not packets and not moves:
            return AppendResult(0, 0)
        # Few round trips: each wait for the server passes the GIL to the thread that makes
        # the next batch, and getting it back can take a switch interval (5 ms).
        with self.datastore.get_connection() as conn:
            curs = conn.cursor()
            try:
                # A move of a position alone appends nothing: no ordering lock, no NOTIFY.
                locked = bool(batch.count or packets)
                curs.execute(self._sql_begin_locked if locked else "BEGIN")
                positions: tuple[int, ...] = ()
                if batch.count:
                    positions = self._copy(curs, batch)  # may roll back to the savepoint
                if packets:
                    digests = [d for d, _ in packets]
                    curs.execute(self._sql_packets, (digests, [p for _, p in packets]))
                for move in moves:
                    self._track(curs, move)
                curs.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
        return AppendResult(len(positions), batch.count - len(positions), positions)

    def position_at(self, when: dt.datetime) -> int:
        """Return the last position appended at or before ``when`` (0 if none)."""
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._sql_position_at, [when]).fetchone()
        return 0 if row is None or row["position"] is None else int(row["position"])

    def _track(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        """Move a projector's position from ``after`` to ``position``, or raise
        TrackingConflict (the caller rolls the whole transaction back)."""
        check_move(tracking)
        if tracking.after == 0:
            curs.execute(self._sql_track_first, (tracking.name, tracking.position))
        else:
            curs.execute(self._sql_track_move, (tracking.position, tracking.name, tracking.after))
        if curs.rowcount != 1:
            curs.execute(self._sql_tracked, [tracking.name])
            row = curs.fetchone()
            raise conflict(tracking, None if row is None else int(row["position"]))

    def _copy(self, curs: Cursor[DictRow], batch: PreparedBatch) -> tuple[int, ...]:
        """Copy the batch into the table; on a duplicate id, insert only the new rows."""
        writer = LibpqWriter(curs, flush_threshold=len(batch.payload) + 1)
        try:
            with curs.copy(self._sql_copy_direct, writer=writer) as copy:
                copy.write(batch.payload)
        except psycopg.errors.UniqueViolation:
            curs.execute(self._sql_staging)
            writer = LibpqWriter(curs, flush_threshold=len(batch.payload) + 1)
            with curs.copy(self._sql_copy, writer=writer) as copy:
                copy.write(batch.payload)
            curs.execute(self._sql_insert)
            added = tuple(r["notification_id"] for r in curs.fetchall())
            if added:
                curs.execute(self._sql_commit_at, [max(added)])
            return added
        # Under the EXCLUSIVE lock no one else draws from the sequence: the batch's
        # positions are the last ``count`` values, in COPY order.
        curs.execute(self._sql_last_position)
        row = curs.fetchone()
        if row is None:
            raise psycopg.InterfaceError("currval returned no row after COPY")
        last = int(row["currval"])
        return tuple(range(last - batch.count + 1, last + 1))

    def count(self, start: int) -> int:
        """Return how many events are stored at or after position ``start``."""
        sql = SQL("SELECT count(*) FROM {0}.{1} WHERE notification_id >= %s").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(sql, [start])
            row = curs.fetchone()
        return 0 if row is None else int(row[0])

    def tracked_many(self, names: Sequence[str]) -> dict[str, int]:
        """Return the positions recorded under these names (absent: not recorded)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql_tracked_many, [list(names)])
            return {str(r[0]): int(r[1]) for r in curs.fetchall()}

    def tracked(self, name: str) -> int:
        """Return the position a projector has recorded (0 if none)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql_tracked, [name])
            row = curs.fetchone()
        return 0 if row is None else int(row[0])

    def _select(self, where: SQL, params: Sequence[Any]) -> list[FetchedRow]:
        return self._fetch(self._sql_select + where, params)

    def _fetch(self, sql: SQL | Composed, params: Sequence[Any]) -> list[FetchedRow]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=_fetched, binary=True) as curs,
        ):
            curs.execute(sql, params)
            return curs.fetchall()

    def select_rows(
        self,
        start: int,
        stop: int | None,
        topics: Sequence[str],
        limit: int,
        shard: Shard | None = None,
    ) -> list[FetchedRow]:
        """Return up to ``limit`` rows from position ``start`` (inclusive) to ``stop``, in
        order; only the streams of ``shard`` if given (``ledger.shards``)."""
        where = "WHERE notification_id >= %s"
        params: list[Any] = [start]
        if stop is not None:
            where += " AND notification_id <= %s"
            params.append(stop)
        if topics:
            where += " AND topic = ANY(%s)"
            params.append(list(topics))
        if shard is not None and shard.count > 1:
            where += " AND mod(('x' || substr(md5(stream), 1, 8))::bit(32)::bigint, %s) = %s"
            params += [shard.count, shard.index]
        return self._select(SQL(where + " ORDER BY notification_id LIMIT %s"), [*params, limit])

    def select_marks(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Return (position, topic, stream) of up to ``limit`` events after ``after``."""
        sql = SQL(
            "SELECT notification_id, topic, stream FROM {0}.{1} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(sql, [after, limit])
            return [(int(r[0]), r[1], r[2]) for r in curs.fetchall()]

    def select_streams(self, start: int, stop: int, topics: Sequence[str]) -> list[str]:
        """Return the distinct streams with events of these topics between two positions."""
        where = "WHERE notification_id >= %s AND notification_id <= %s"
        params: list[Any] = [start, stop]
        if topics:
            where += " AND topic = ANY(%s)"
            params.append(list(topics))
        sql = SQL("SELECT DISTINCT stream FROM {0}.{1} " + where + " ORDER BY stream").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(sql, params)
            return [r[0] for r in curs.fetchall()]

    def select_stream(self, stream: str, after: int, limit: int) -> list[FetchedRow]:
        """Return up to ``limit`` rows of one stream after position ``after``, in order."""
        where = "WHERE stream = %s AND notification_id > %s ORDER BY notification_id LIMIT %s"
        return self._select(SQL(where), [stream, after, limit])

    def select_of_streams(
        self, streams: Sequence[str], topics: Sequence[str], until: int | None = None
    ) -> list[FetchedRow]:
        """Return the rows of several streams (of these topics), by stream and position.

        One index lookup per stream (a lateral join): right after a bulk append the table
        has no statistics yet, and ``stream = ANY(...)`` is then planned as a scan of the
        whole table.
        """
        # (topic || '') keeps the planner on the stream index; without statistics it may
        # otherwise walk the topic index through every event of those types.
        topic = "AND (e.topic || '') = ANY(%s) " if topics else ""
        upto = "AND e.notification_id <= %s " if until is not None else ""
        sql = SQL(
            "SELECT " + _columns("e") + " "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS s(stream, n) CROSS JOIN LATERAL "
            "(SELECT * FROM {schema}.{table} e WHERE e.stream = s.stream "
            + topic
            + upto
            + "ORDER BY e.notification_id) e ORDER BY s.n, e.notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        params: list[Any] = [list(streams), *([list(topics)] if topics else [])]
        if until is not None:
            params.append(until)
        return self._fetch(sql, params)

    def select_ids(self, ids: Sequence[str]) -> list[FetchedRow]:
        """Return the stored rows with these event ids, in position order."""
        where = (
            "WHERE originator_id = ANY(%s::uuid[]) AND originator_version = 0 "
            "ORDER BY notification_id"
        )
        return self._select(SQL(where), [list(ids)])

    def get_packet(self, digest: str) -> bytes | None:
        """Return a stored packet's bytes, or None."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql_get_packet, [digest])
            row = curs.fetchone()
        return None if row is None else bytes(row[0])

    def waiter(self) -> _ListenWaiter:
        """Return a waiter that LISTENs for this table's notifications."""
        return _ListenWaiter(self)


def _own_connection(recorder: PostgresLedgerRecorder) -> psycopg.Connection[Any]:
    """Return a connection of its own (outside the pool, autocommit) made with the
    pool's settings, keepalives included: for LISTEN and for session advisory locks."""
    pool = recorder.datastore.pool
    info = pool.conninfo if isinstance(pool.conninfo, str) else ""
    kwargs = dict(pool.kwargs) if isinstance(pool.kwargs, dict) else {}
    kwargs.pop("row_factory", None)
    return psycopg.Connection.connect(info, autocommit=True, **kwargs)


class _ListenWaiter:
    """Waits on LISTEN/NOTIFY on its own connection, reconnecting if it drops."""

    def __init__(self, recorder: PostgresLedgerRecorder) -> None:
        self._recorder = recorder
        self._conn: psycopg.Connection[Any] | None = None
        with contextlib.suppress(psycopg.OperationalError):  # the server away: wait() tries
            self._connect()

    def _connect(self) -> None:
        conn = _own_connection(self._recorder)
        conn.execute(SQL("LISTEN {0}").format(Identifier(self._recorder.channel_name)))
        self._conn = conn

    def wait(self, timeout: float) -> None:
        """Return after a notification or after ``timeout`` seconds (the safety net)."""
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
            if self._conn is not None:
                for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                    break
        except psycopg.OperationalError:
            self.close()

    def close(self) -> None:
        """Close the listening connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Claims:
    """Session advisory locks on a connection of their own: a claim on a name (a projector
    shard, say) is held until released, or until the process or its connection dies, so
    two processes never work on one name at once and a killed one frees its claims."""

    def __init__(self, recorder: PostgresLedgerRecorder) -> None:
        self._recorder = recorder
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()

    @staticmethod
    def key(name: str) -> int:
        """Return the advisory lock key of a name (64 bits of its BLAKE2b)."""
        return int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._held.clear()  # a lost connection lost its locks with it
            self._conn = _own_connection(self._recorder)
        return self._conn

    def claim(self, name: str) -> bool:
        """Return True if this process now holds ``name`` (False: another one does)."""
        if name in self._held:
            return True
        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", [self.key(name)])
                .fetchone()
            )
        except psycopg.Error as exc:
            self.close()
            raise LedgerError(f"claim of {name} failed: {exc}") from exc
        if row is not None and row[0]:
            self._held.add(name)
            return True
        return False

    def release(self, name: str) -> None:
        """Release a claim this process holds (nothing if it holds none)."""
        if name not in self._held:
            return
        self._held.discard(name)
        try:
            self._connection().execute("SELECT pg_advisory_unlock(%s)", [self.key(name)])
        except psycopg.Error:
            self.close()  # the lock went with the connection

    def close(self) -> None:
        """Release every claim by closing the connection."""
        self._held.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
