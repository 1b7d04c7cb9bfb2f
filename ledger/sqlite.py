"""The SQLite recorder: the embedded default, a single file in WAL mode.

The events table keeps the library's columns (``rowid`` is the position, as in
eventsourcing's own SQLite recorder) plus ``stream``, indexed with the position. An append
is one transaction of ``INSERT OR IGNORE``: events already stored are skipped; it records
its last position with the time (``_commits``), so times map to positions. Packet
bytes live in a folder beside the file (see ``ledger.packets``). Followers poll.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from skyledger.ledger.codec import StoredRow
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

__all__ = ["SqliteLedgerRecorder"]


class SqliteLedgerRecorder(SQLiteApplicationRecorder):
    """Records ledger events in a SQLite file, idempotently and in batches."""

    poll_interval_s = 0.05

    def __init__(
        self, datastore: SQLiteDatastore, events_table_name: str = "skyledger_events"
    ) -> None:
        super().__init__(datastore, events_table_name)
        t = events_table_name
        self._sql_insert = (
            f"INSERT OR IGNORE INTO {t} (originator_id, originator_version, topic, state, stream) "
            "VALUES (?, 0, ?, ?, ?)"
        )
        self._sql_select = f"SELECT rowid, originator_id, topic, state, stream FROM {t} "

    def construct_create_table_statements(self) -> list[str]:
        """Return the statements that create the events table and its stream index."""
        t = self.events_table_name
        return [
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "notification_id INTEGER PRIMARY KEY, "
            "originator_id TEXT NOT NULL, "
            "originator_version INTEGER NOT NULL, "
            "topic TEXT, "
            "state BLOB, "
            "stream TEXT NOT NULL DEFAULT '', "
            "UNIQUE (originator_id, originator_version))",
            f"CREATE INDEX IF NOT EXISTS {t}_stream_idx ON {t} (stream, notification_id)",
            f"CREATE INDEX IF NOT EXISTS {t}_topic_idx ON {t} (topic, notification_id)",
            f"CREATE TABLE IF NOT EXISTS {t}_tracking "
            "(name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t}_commits "
            "(position INTEGER PRIMARY KEY, recorded_at REAL NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {t}_commits_time_idx ON {t}_commits (recorded_at)",
        ]

    def prepare(self, rows: Sequence[StoredRow]) -> PreparedBatch:
        """Return the rows as statement parameters."""
        return PreparedBatch(len(rows), [(r.id, r.topic, r.state, r.stream) for r in rows])

    def write(
        self,
        batch: PreparedBatch,
        packets: Sequence[tuple[str, bytes]] = (),
        tracking: Trackings = None,
    ) -> AppendResult:
        """Store a prepared batch's new rows, in order, in one transaction, with the
        tracking positions given."""
        moves = each_tracking(tracking)
        if not batch.count and not moves:
            return AppendResult(0, 0)
        with self.datastore.transaction(commit=True) as curs:
            # Write first, so the transaction takes the write lock (waiting for it) before
            # it reads: a read-then-write transaction in WAL mode fails at once if another
            # process wrote in between. New rows take consecutive rowids after the maximum.
            if not batch.count:
                for move in moves:
                    self._track(curs, move)  # a write: it takes the lock
                return AppendResult(0, 0)
            curs.executemany(self._sql_insert, batch.payload)
            added = curs.sqlite_cursor.rowcount
            head = self._max_notification_id(curs) or 0
            positions = tuple(range(head - added + 1, head + 1))
            if added:
                curs.execute(
                    f"INSERT INTO {self.events_table_name}_commits VALUES (?, ?)",
                    (head, time.time()),
                )
            for move in moves:
                self._track(curs, move)
        return AppendResult(added, batch.count - added, positions)

    def _track(self, curs: Any, tracking: Tracking) -> None:
        """Move a projector's position from ``after`` to ``position``, or raise
        TrackingConflict (the transaction is then rolled back)."""
        check_move(tracking)
        table = f"{self.events_table_name}_tracking"
        if tracking.after == 0:
            curs.execute(
                f"INSERT INTO {table} (name, position) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (tracking.name, tracking.position),
            )
        else:
            curs.execute(
                f"UPDATE {table} SET position = ? WHERE name = ? AND position = ?",
                (tracking.position, tracking.name, tracking.after),
            )
        if curs.sqlite_cursor.rowcount != 1:
            curs.execute(f"SELECT position FROM {table} WHERE name = ?", (tracking.name,))
            row = curs.fetchone()
            raise conflict(tracking, None if row is None else int(row[0]))

    def count(self, start: int) -> int:
        """Return how many events are stored at or after position ``start``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT count(*) FROM {self.events_table_name} WHERE rowid >= ?", (start,)
            )
            row = curs.fetchone()
        return 0 if row is None else int(row[0])

    def tracked_many(self, names: Sequence[str]) -> dict[str, int]:
        """Return the positions recorded under these names (absent: not recorded)."""
        wanted = list(names)
        if not wanted:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT name, position FROM {self.events_table_name}_tracking "
                f"WHERE name IN ({','.join('?' * len(wanted))})",
                wanted,
            )
            return {str(r[0]): int(r[1]) for r in curs.fetchall()}

    def tracked(self, name: str) -> int:
        """Return the position a projector has recorded (0 if none)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT position FROM {self.events_table_name}_tracking WHERE name = ?", (name,)
            )
            row = curs.fetchone()
        return 0 if row is None else int(row[0])

    def position_at(self, when: dt.datetime) -> int:
        """Return the last position appended at or before ``when`` (0 if none)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT max(position) FROM {self.events_table_name}_commits "
                "WHERE recorded_at <= ?",
                (when.timestamp(),),
            )
            row = curs.fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def _select(self, where: str, params: Sequence[Any]) -> list[FetchedRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql_select + where, params)
            return [FetchedRow(r[0], r[1], r[2], r[3], r[4]) for r in curs.fetchall()]

    def select_rows(
        self,
        start: int,
        stop: int | None,
        topics: Sequence[str],
        limit: int,
        shard: Shard | None = None,
    ) -> list[FetchedRow]:
        """Return up to ``limit`` rows from position ``start`` (inclusive) to ``stop``, in
        order; only the streams of ``shard`` if given (filtered here: SQLite has no MD5)."""
        if shard is None or shard.count <= 1:
            return self._select_rows(start, stop, topics, limit)
        found: list[FetchedRow] = []
        while len(found) < limit:
            rows = self._select_rows(start, stop, topics, limit)
            found += [r for r in rows if shard.holds(r.stream)]
            if len(rows) < limit:
                break
            start = rows[-1].position + 1
        return found[:limit]

    def _select_rows(
        self, start: int, stop: int | None, topics: Sequence[str], limit: int
    ) -> list[FetchedRow]:
        where = "WHERE rowid >= ?"
        params: list[Any] = [start]
        if stop is not None:
            where += " AND rowid <= ?"
            params.append(stop)
        if topics:
            where += f" AND topic IN ({','.join('?' * len(topics))})"
            params += list(topics)
        return self._select(where + " ORDER BY rowid LIMIT ?", [*params, limit])

    def select_marks(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Return (position, topic, stream) of up to ``limit`` events after ``after``."""
        sql = (
            f"SELECT rowid, topic, stream FROM {self.events_table_name} WHERE rowid > ? "
            "ORDER BY rowid LIMIT ?"
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, [after, limit])
            return [(int(r[0]), r[1], r[2]) for r in curs.fetchall()]

    def select_streams(self, start: int, stop: int, topics: Sequence[str]) -> list[str]:
        """Return the distinct streams with events of these topics between two positions."""
        where = "WHERE rowid >= ? AND rowid <= ?"
        params: list[Any] = [start, stop]
        if topics:
            where += f" AND topic IN ({','.join('?' * len(topics))})"
            params += list(topics)
        sql = f"SELECT DISTINCT stream FROM {self.events_table_name} {where} ORDER BY stream"
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql, params)
            return [r[0] for r in curs.fetchall()]

    def select_stream(self, stream: str, after: int, limit: int) -> list[FetchedRow]:
        """Return up to ``limit`` rows of one stream after position ``after``, in order."""
        where = "WHERE stream = ? AND rowid > ? ORDER BY rowid LIMIT ?"
        return self._select(where, [stream, after, limit])

    def select_of_streams(
        self, streams: Sequence[str], topics: Sequence[str], until: int | None = None
    ) -> list[FetchedRow]:
        """Return the rows of several streams (of these topics), by stream and position.

        ``+topic`` keeps SQLite on the stream index: otherwise it may pick the topic index
        and walk every event of those types (seconds per query on a large ledger).
        """
        where = f"WHERE stream IN ({','.join('?' * len(streams))})"
        params: list[Any] = list(streams)
        if topics:
            where += f" AND +topic IN ({','.join('?' * len(topics))})"
            params += list(topics)
        if until is not None:
            where += " AND rowid <= ?"
            params.append(until)
        return self._select(where + " ORDER BY stream, rowid", params)

    def select_ids(self, ids: Sequence[str]) -> list[FetchedRow]:
        """Return the stored rows with these event ids, in position order."""
        found: list[FetchedRow] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            where = f"WHERE originator_id IN ({marks}) AND originator_version = 0"
            found += self._select(where, chunk)
        return sorted(found)

    def waiter(self) -> _PollWaiter:
        """Return a waiter that sleeps for the poll interval (SQLite cannot notify)."""
        return _PollWaiter(self.poll_interval_s)


class _PollWaiter:
    """Waits by sleeping: SQLite has no notifications, so followers poll."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s

    def wait(self, timeout: float) -> None:
        """Sleep for the poll interval, never longer than ``timeout``."""
        time.sleep(min(self._interval_s, timeout))

    def close(self) -> None:
        """Release nothing: polling holds no resources."""
