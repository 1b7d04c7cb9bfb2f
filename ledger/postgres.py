"""The PostgreSQL recorder: eventsourcing's application recorder with a fast idempotent append.

The events table is the library's (``originator_id`` = event id as UUID,
``originator_version`` = 0, ``topic``, ``state``, ``notification_id`` = position) plus a
``stream`` column indexed with the position, so one stock's stream reads in order.

An append copies the batch in binary into a temporary staging table, takes the library's
``EXCLUSIVE`` table lock (so positions commit in order and tailing readers never skip a
gap), and inserts with ``ON CONFLICT DO NOTHING``: events already stored are skipped,
within a batch, across batches and across processes. Packet bytes go into
``<table>_packets`` in the same transaction. ``NOTIFY`` wakes followers on commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.codec import StoredRow
from ledger.rows import AppendResult, FetchedRow

__all__ = ["PostgresLedgerRecorder"]

_COLUMNS = "notification_id, originator_id, topic, state, stream"


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    """Records ledger events in PostgreSQL, idempotently and in batches."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "skyledger_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        self.packets_table = f"{events_table_name}_packets"
        fmt: dict[str, Any] = {
            "schema": schema,
            "table": table,
            "packets": Identifier(self.packets_table),
            "stream_idx": Identifier(f"{events_table_name}_stream_idx"),
        }
        self.sql_create_statements += [
            SQL(
                "ALTER TABLE {schema}.{table} "
                "ADD COLUMN IF NOT EXISTS stream text NOT NULL DEFAULT ''"
            ).format(**fmt),
            SQL(
                "CREATE INDEX IF NOT EXISTS {stream_idx} "
                "ON {schema}.{table} (stream, notification_id)"
            ).format(**fmt),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{packets} "
                "(digest text PRIMARY KEY, data bytea NOT NULL)"
            ).format(**fmt),
        ]
        self._sql_staging = SQL(
            "CREATE TEMP TABLE IF NOT EXISTS skyledger_staging "
            "(seq int4, originator_id text, topic text, state bytea, stream text) "
            "ON COMMIT DELETE ROWS"
        )
        self._sql_copy = SQL(
            "COPY skyledger_staging (seq, originator_id, topic, state, stream) "
            "FROM STDIN (FORMAT BINARY)"
        )
        self._sql_insert = SQL(
            "INSERT INTO {schema}.{table} "
            "(originator_id, originator_version, topic, state, stream) "
            "SELECT originator_id::uuid, 0, topic, state, stream "
            "FROM skyledger_staging ORDER BY seq "
            "ON CONFLICT DO NOTHING RETURNING notification_id"
        ).format(**fmt)
        self._sql_packets = SQL(
            "INSERT INTO {schema}.{packets} (digest, data) "
            "SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT DO NOTHING"
        ).format(**fmt)
        self._sql_select = SQL("SELECT " + _COLUMNS + " FROM {schema}.{table} ").format(**fmt)
        self._sql_get_packet = SQL("SELECT data FROM {schema}.{packets} WHERE digest = %s").format(
            **fmt
        )
        self._sql_has_packets = SQL(
            "SELECT digest FROM {schema}.{packets} WHERE digest = ANY(%s)"
        ).format(**fmt)

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
            conn.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])

    def append_rows(
        self, rows: Sequence[StoredRow], packets: Sequence[tuple[str, bytes]] = ()
    ) -> AppendResult:
        """Store the rows not yet stored, in order, in one transaction; return what was new."""
        if not rows and not packets:
            return AppendResult(0, 0)
        with self.datastore.transaction(commit=True) as curs:
            if packets:
                digests = [d for d, _ in packets]
                curs.execute(self._sql_packets, (digests, [p for _, p in packets]))
            if not rows:
                return AppendResult(0, 0)
            curs.execute(self._sql_staging)
            with curs.copy(self._sql_copy) as copy:
                copy.set_types(["int4", "text", "text", "bytea", "text"])
                write = copy.write_row
                for seq, row in enumerate(rows):
                    write((seq, row.id, row.topic, row.state, row.stream))
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self._sql_insert)
            positions = tuple(r["notification_id"] for r in curs.fetchall())
        return AppendResult(len(positions), len(rows) - len(positions), positions)

    def _select(self, where: SQL, params: Sequence[Any]) -> list[FetchedRow]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql_select + where, params)
            return [FetchedRow(p, i.hex, t, bytes(s), st) for p, i, t, s, st in curs.fetchall()]

    def select_rows(
        self, start: int, stop: int | None, topics: Sequence[str], limit: int
    ) -> list[FetchedRow]:
        """Return up to ``limit`` rows from position ``start`` (inclusive) to ``stop``, in order."""
        where = "WHERE notification_id >= %s"
        params: list[Any] = [start]
        if stop is not None:
            where += " AND notification_id <= %s"
            params.append(stop)
        if topics:
            where += " AND topic = ANY(%s)"
            params.append(list(topics))
        return self._select(SQL(where + " ORDER BY notification_id LIMIT %s"), [*params, limit])

    def select_stream(self, stream: str, after: int, limit: int) -> list[FetchedRow]:
        """Return up to ``limit`` rows of one stream after position ``after``, in order."""
        where = "WHERE stream = %s AND notification_id > %s ORDER BY notification_id LIMIT %s"
        return self._select(SQL(where), [stream, after, limit])

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

    def has_packets(self, digests: Sequence[str]) -> set[str]:
        """Return which of these digests have their bytes stored."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._sql_has_packets, [list(digests)])
            return {r[0] for r in curs.fetchall()}

    def waiter(self) -> _ListenWaiter:
        """Return a waiter that LISTENs for this table's notifications."""
        return _ListenWaiter(self)


class _ListenWaiter:
    """Waits on LISTEN/NOTIFY on its own connection, reconnecting if it drops."""

    def __init__(self, recorder: PostgresLedgerRecorder) -> None:
        self._recorder = recorder
        self._conn: psycopg.Connection[Any] | None = None
        self._connect()

    def _connect(self) -> None:
        pool = self._recorder.datastore.pool
        info = pool.conninfo if isinstance(pool.conninfo, str) else ""
        kwargs = dict(pool.kwargs) if isinstance(pool.kwargs, dict) else {}
        kwargs.pop("row_factory", None)
        conn = psycopg.Connection.connect(info, autocommit=True, **kwargs)
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
