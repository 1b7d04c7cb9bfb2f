"""The ledger: append events, read them back by position, type, stream or id, follow the log.

ledger = Ledger.open("sqlite:///skyledger-data/ledger.sqlite")
ledger.append([event, ...], packets=[(digest, data), ...])
for event in ledger.read(start=1, types=[DatapointAdded]): ...
for event in ledger.follow(after=ledger.head()): ...   # blocks for new events
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from skyledger.ledger.codec import StoredRow, decode, encode, topic_of
from skyledger.ledger.errors import EventRejected, LedgerError
from skyledger.ledger.events import ConfigurationRegistered, Event
from skyledger.ledger.factory import LedgerRecorder, build_recorder
from skyledger.ledger.ids import config_id
from skyledger.ledger.packets import PacketStore
from skyledger.ledger.postgres import Claims, PostgresLedgerRecorder
from skyledger.ledger.rows import AppendResult, FetchedRow, PreparedBatch, Tracking, Trackings
from skyledger.ledger.settings import LedgerSettings, PostgresTarget, redact
from skyledger.ledger.shards import Shard
from skyledger.ledger.writer import BatchWriter

__all__ = ["Ledger"]

READ_BATCH = 1000  # decoding in smaller batches keeps fewer objects alive per GC pass


class Waiter(Protocol):
    """Waits for news of appended events (see ``Ledger.waiter``)."""

    def wait(self, timeout: float) -> None:
        """Return on news or after ``timeout`` seconds."""

    def close(self) -> None:
        """Release what the waiter holds."""


class Ledger:
    """An append-only, content-addressed event log on SQLite or PostgreSQL."""

    def __init__(
        self, recorder: LedgerRecorder, packets: PacketStore, settings: LedgerSettings
    ) -> None:
        self.recorder = recorder
        self.packets = packets
        self.settings = settings

    @classmethod
    def open(cls, settings: LedgerSettings | str | None = None, create: bool = True) -> Ledger:
        """Open the ledger that the settings or URL name, creating its tables if needed;
        with ``create`` False, a ledger that does not exist is an error (LedgerUnavailable)
        and nothing is made (commands that only read)."""
        if settings is None:
            settings = LedgerSettings.load()
        elif isinstance(settings, str):
            settings = LedgerSettings.load(ledger=settings)
        recorder, packets = build_recorder(settings, create)
        return cls(recorder, packets, settings)

    @property
    def url(self) -> str:
        """Return the store URL with any password hidden."""
        return redact(self.settings.ledger)

    @property
    def backend(self) -> str:
        """Return ``"postgres"`` or ``"sqlite"``."""
        return "postgres" if isinstance(self.settings.target(), PostgresTarget) else "sqlite"

    def reconnect(self) -> None:
        """Replace the pooled connections (after the server restarted or the network
        came back, the pool may hold connections that are dead but look open)."""
        if isinstance(self.recorder, PostgresLedgerRecorder):
            pool = self.recorder.datastore.pool
            if not pool.closed:
                pool.drain()

    def close(self) -> None:
        """Release the store's connections."""
        self.recorder.datastore.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PersistenceError as exc:
            raise LedgerError(f"{what} failed on {self.url}: {exc}") from exc

    # -- writing ----------------------------------------------------------------------

    def append(
        self,
        events: Iterable[Event],
        packets: Sequence[tuple[str, bytes]] = (),
        tracking: Tracking | None = None,
    ) -> AppendResult:
        """Append events in one transaction; those already stored are skipped, not errors.

        ``packets`` are (digest, bytes) pairs of received packets, kept once by digest
        unless the settings keep digests only. ``tracking`` moves a projector's position
        (``ledger.rows.Tracking``) in the same transaction as its output, so a crash
        neither loses nor repeats work; if the stored position is not where the tracking
        says it started, nothing is stored and TrackingConflict is raised.
        """
        return self.write(self.prepare(events), packets, tracking)

    def tracked_many(self, names: Iterable[str]) -> dict[str, int]:
        """Return the positions of several projectors (0 for those with none), in one read."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, int] = self._call("tracked", self.recorder.tracked_many, wanted)
        return {n: found.get(n, 0) for n in wanted}

    def tracked(self, name: str) -> int:
        """Return the position a projector recorded with its last output (0 if none)."""
        position: int = self._call("tracking", self.recorder.tracked, name)
        return position

    def prepare(self, events: Iterable[Event]) -> PreparedBatch:
        """Return events encoded for this store, without repeats (the CPU part of an append)."""
        rows = {}
        for event in events:
            if not isinstance(event, Event):
                msg = f"not an event: {type(event).__name__} (append takes ledger events)"
                raise EventRejected(msg)
            if event.id not in rows:
                rows[event.id] = encode(event)
        return self.recorder.prepare(list(rows.values()))

    def append_rows(self, rows: Iterable[StoredRow], tracking: Trackings = None) -> AppendResult:
        """Append events encoded already (once each, in order) in one transaction, with a
        projector's tracking position if given; as :meth:`append` for events."""
        unique: dict[str, StoredRow] = {}
        for row in rows:
            unique.setdefault(row.id, row)
        return self.write(self.prepare_rows(list(unique.values())), tracking=tracking)

    def prepare_rows(self, rows: Sequence[StoredRow]) -> PreparedBatch:
        """Return rows encoded already (``ledger.codec.encode``, perhaps in another
        process) as a batch for this store; the rows must not repeat an id."""
        return self.recorder.prepare(rows)

    def write(
        self,
        batch: PreparedBatch,
        packets: Sequence[tuple[str, bytes]] = (),
        tracking: Trackings = None,
    ) -> AppendResult:
        """Store a prepared batch and its packets in one transaction (the I/O part)."""
        to_db: Sequence[tuple[str, bytes]] = ()
        if packets and self.settings.packets == "keep":
            if self.packets.in_database:
                to_db = packets
            else:
                self.packets.put(packets)
        result: AppendResult = self._call("append", self.recorder.write, batch, to_db, tracking)
        return result

    def writer(
        self,
        batch_size: int = 5000,
        depth: int = 1,
        tracking: str | None = None,
        after: int = 0,
        on_stored: Callable[[Sequence[Tracking]], None] | None = None,
    ) -> BatchWriter:
        """Return a writer that appends in batches on a background thread, moving the
        position ``tracking`` from ``after`` with each batch if given (see ledger.writer);
        ``on_stored`` is called (on that thread) with the moves of each batch stored."""
        return BatchWriter(self, batch_size, depth, tracking=tracking, after=after,
                           on_stored=on_stored)  # fmt: skip

    def register_config(self, unit: str, config: dict[str, Any], run_id: str | None = None) -> str:
        """Record a unit configuration once, under its hash, and return the hash."""
        digest = config_id(config)
        event = ConfigurationRegistered(
            stream=f"config:{digest}", config_hash=digest, unit=unit, config=config, run_id=run_id
        )
        self.append([event])
        return digest

    # -- reading ----------------------------------------------------------------------

    def head(self) -> int:
        """Return the position of the last stored event (0 for an empty ledger)."""
        head: int | None = self._call("head", self.recorder.max_notification_id)
        return head or 0

    def position_at(self, when: dt.datetime) -> int:
        """Return the position the ledger stood at, at time ``when``: the last event
        appended then or before (0: none). The time of each append is recorded with its
        last position; appends made by skyledger before 0.3 have none, so times map
        to positions only from a ledger's first append by 0.3 or later."""
        if when.tzinfo is None:
            raise ValueError(f"a time with its zone is needed (UTC: {when.isoformat()}Z)")
        found: int = self._call("position at", self.recorder.position_at, when)
        return found

    def count(self, start: int = 1) -> int:
        """Return how many events are stored at or after position ``start``."""
        counted: int = self._call("count", self.recorder.count, start)
        return counted

    def _decode(self, rows: Iterable[FetchedRow]) -> list[Event]:
        return [decode(r.id, r.topic, r.state, r.stream, r.position) for r in rows]

    def read(
        self,
        start: int = 1,
        stop: int | None = None,
        types: Sequence[type[Event]] = (),
        batch_size: int = READ_BATCH,
    ) -> Iterator[Event]:
        """Yield events in position order from ``start`` to ``stop`` (inclusive), optionally
        only of some types."""
        topics = [topic_of(t) for t in types]
        while stop is None or start <= stop:
            rows: list[FetchedRow] = self._call(
                "read", self.recorder.select_rows, start, stop, topics, batch_size
            )
            if not rows:
                return
            yield from self._decode(rows)
            start = rows[-1].position + 1

    def read_batch(
        self,
        start: int,
        stop: int | None,
        types: Sequence[type[Event]],
        limit: int,
        shard: Shard | None = None,
    ) -> list[Event]:
        """Return up to ``limit`` events (of these types, of the streams of ``shard`` if
        given) from position ``start`` to ``stop`` (inclusive), in position order."""
        topics = [topic_of(t) for t in types]
        rows: list[FetchedRow] = self._call(
            "read", self.recorder.select_rows, start, stop, topics, limit, shard
        )
        return self._decode(rows)

    def stream(self, stream: str, after: int = 0, until: int | None = None) -> Iterator[Event]:
        """Yield one stream's events (for example one stock's) in position order, after
        position ``after`` and up to ``until`` if given."""
        while True:
            rows: list[FetchedRow] = self._call(
                "read stream", self.recorder.select_stream, stream, after, READ_BATCH
            )
            for event in self._decode(rows):
                if until is not None and (event.position or 0) > until:
                    return
                yield event
            if len(rows) < READ_BATCH:
                return
            after = rows[-1].position

    def stream_events(
        self,
        streams: Iterable[str],
        types: Sequence[type[Event]] = (),
        batch: int = 200,
        until: int | None = None,
    ) -> Iterator[tuple[str, list[Event]]]:
        """Yield each of ``streams`` (in the order given) with its events of these types in
        position order, up to position ``until`` if given (what the ledger held then);
        streams are read ``batch`` at a time, one query per batch."""
        topics = [topic_of(t) for t in types]
        pending: list[str] = []
        for stream in streams:
            pending.append(stream)
            if len(pending) >= batch:
                yield from self._stream_events(pending, topics, until)
                pending = []
        if pending:
            yield from self._stream_events(pending, topics, until)

    def _stream_events(
        self, streams: list[str], topics: list[str], until: int | None
    ) -> Iterator[tuple[str, list[Event]]]:
        rows: list[FetchedRow] = self._call(
            "read streams", self.recorder.select_of_streams, streams, topics, until
        )
        found: dict[str, list[Event]] = {}
        for row in rows:
            event = decode(row.id, row.topic, row.state, row.stream, row.position)
            found.setdefault(row.stream, []).append(event)
        for stream in streams:
            yield stream, found.get(stream, [])

    def marks(self, after: int, limit: int = READ_BATCH) -> list[tuple[int, str, str]]:
        """Return the position, event type name and stream of up to ``limit`` events after
        position ``after``, without reading the events (what a notifier needs)."""
        rows: list[tuple[int, str, str]] = self._call(
            "read marks", self.recorder.select_marks, after, limit
        )
        return [(position, topic.rpartition(":")[2], stream) for position, topic, stream in rows]

    def waiter(self) -> Waiter:
        """Return a waiter for new events: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.
        ``waiter.wait(timeout)`` returns on news or after ``timeout`` seconds."""
        waiter: Waiter = self.recorder.waiter()
        return waiter

    def streams(self, start: int, stop: int, types: Sequence[type[Event]] = ()) -> list[str]:
        """Return the distinct streams with events (of these types) between two positions."""
        topics = [topic_of(t) for t in types]
        found: list[str] = self._call("streams", self.recorder.select_streams, start, stop, topics)
        return found

    def get_many(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """Return the stored events among these ids, by id."""
        ids = [UUID(hex=i).hex for i in event_ids]
        rows: list[FetchedRow] = self._call("get", self.recorder.select_ids, ids)
        return {e.id: e for e in self._decode(rows)}

    def get(self, event_id: str) -> Event | None:
        """Return the stored event with this id, or None."""
        return self.get_many([event_id]).get(UUID(hex=event_id).hex)

    def config(self, config_hash: str) -> dict[str, Any] | None:
        """Return a registered configuration by its hash, or None."""
        event = self.get(ConfigurationRegistered.id_for(config_hash=config_hash))
        return event.config if isinstance(event, ConfigurationRegistered) else None

    def packet(self, digest: str) -> bytes | None:
        """Return a received packet's bytes by digest, or None if they are not kept."""
        if self.packets.in_database and isinstance(self.recorder, PostgresLedgerRecorder):
            data: bytes | None = self._call("packet", self.recorder.get_packet, digest)
            return data
        return self.packets.get(digest)

    def claims(self) -> Claims:
        """Return this process's claims on names (PostgreSQL advisory locks): how several
        processes share sharded work without two working on one shard at once."""
        if not isinstance(self.recorder, PostgresLedgerRecorder):
            raise LedgerError(f"claims need a PostgreSQL ledger, not {self.url}")
        return Claims(self.recorder)

    def follow(
        self,
        after: int = 0,
        types: Sequence[type[Event]] = (),
        *,
        wait_s: float = 1.0,
        stop: threading.Event | None = None,
        idle_timeout_s: float | None = None,
    ) -> Iterator[Event]:
        """Yield events after position ``after`` as they are stored, blocking for new ones.

        PostgreSQL wakes on LISTEN/NOTIFY, with ``wait_s`` as a safety net (the log is
        re-read after each wait even without a notification); SQLite polls. Ends when
        ``stop`` is set, or after ``idle_timeout_s`` without new events.
        """
        topics = [topic_of(t) for t in types]
        waiter = self.recorder.waiter()
        last_seen = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                rows: list[FetchedRow] = self._call(
                    "follow", self.recorder.select_rows, after + 1, None, topics, READ_BATCH
                )
                if rows:
                    yield from self._decode(rows)
                    after = rows[-1].position
                    last_seen = time.monotonic()
                    continue
                if idle_timeout_s is not None and time.monotonic() - last_seen >= idle_timeout_s:
                    return
                waiter.wait(wait_s)
        finally:
            waiter.close()
