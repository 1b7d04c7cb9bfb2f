"""A batching writer: appends full batches on a background thread while the caller goes on.

    with ledger.writer(batch_size=5000) as out:
        for event in make_events():
            out.add(event)
    out.result        # AppendResult of everything appended

While the database inserts one batch (the server works on another core and psycopg
releases the GIL while it sends and waits), the caller builds and encodes the next. At
most ``depth`` batches wait in the queue, so memory stays bounded. An error in the
background is raised in the caller at the next ``add``, ``flush`` or on leaving the
block; each batch is still one transaction, all or nothing.

A writer given a tracking name (``ledger.writer(tracking="t0:...", after=position)``)
hands batches over only at the positions the caller marks (:meth:`BatchWriter.mark`,
after each whole item: a batch never splits one), each batch moving the position to
its last mark in the same transaction, so an interrupted writer resumes where its last
stored batch ended. A writer may keep several positions (a stream's partitions): each
is added with its starting point (:meth:`BatchWriter.keep`) and marked by name; a
batch moves every position marked since the one before.
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol

from skyledger.ledger.codec import StoredRow, encode
from skyledger.ledger.errors import EventRejected, LedgerError
from skyledger.ledger.events import Event
from skyledger.ledger.rows import AppendResult, PreparedBatch, Tracking

__all__ = ["BatchTarget", "BatchWriter"]

_Batch = tuple[PreparedBatch, list[tuple[str, bytes]], list[Tracking]]
_REMEMBERED = 100_000
"""Ids a writer remembers sending, in each of two generations: repeats within about that
many events take no round trip; older ones are sent again and found stored (the memory
stays bounded however long the run: about 20 MB at most)."""


class BatchTarget(Protocol):
    """What a :class:`BatchWriter` appends to: a :class:`~ledger.store.Ledger`.

    The writer needs only these two of the ledger's methods; naming them here keeps this
    module free of the store (which imports the writer to make one in ``Ledger.writer``).
    """

    def prepare_rows(self, rows: Sequence[StoredRow]) -> PreparedBatch:
        """Return encoded rows as a batch for the store (no I/O)."""
        ...

    def write(
        self,
        batch: PreparedBatch,
        packets: Sequence[tuple[str, bytes]] = (),
        tracking: Sequence[Tracking] | None = None,
    ) -> AppendResult:
        """Store a prepared batch, its packets and tracking moves in one transaction."""
        ...


class BatchWriter:
    """Appends events to a ledger in batches, one batch in flight while the next fills."""

    def __init__(
        self,
        ledger: BatchTarget,
        batch_size: int = 5000,
        depth: int = 1,
        switch_interval_s: float | None = 0.0005,
        tracking: str | None = None,
        after: int = 0,
        on_stored: Callable[[Sequence[Tracking]], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise LedgerError(f"batch_size must be at least 1, got {batch_size}")
        # The background thread waits on the server several times per batch and needs the
        # GIL back after each wait; while the caller computes, that takes up to one switch
        # interval (5 ms by default). A shorter interval while the writer runs lets the
        # database work overlap with the caller's (measured: about 1.2x on appends).
        self._old_interval = sys.getswitchinterval()
        if switch_interval_s is not None:
            sys.setswitchinterval(switch_interval_s)
        # Events hold no reference cycles, yet building thousands of them triggers the
        # cyclic collector over and over, and each pass scans everything alive. A higher
        # first-generation threshold while the writer runs gains about 13% on appends.
        self._old_gc = gc.get_threshold()
        gc.set_threshold(max(self._old_gc[0], 50_000), *self._old_gc[1:])
        self.ledger = ledger
        self.batch_size = batch_size
        self.result = AppendResult(0, 0)
        self._rows: list[StoredRow] = []
        self._sent: set[str] = set()  # ids handed over lately: repeats need no round trip
        self._sent_before: set[str] = set()  # the generation before
        self._repeats = 0
        self._packets: list[tuple[str, bytes]] = []
        self._tracking = tracking
        # name -> (stored or handed over, marked): the positions this writer moves
        self._positions: dict[str, list[int]] = {}
        if tracking is not None:
            self._positions[tracking] = [after, after]
        self._on_stored = on_stored
        self.handed_over = 0  # batches handed to the background thread so far
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self.result = self.result + self.ledger.write(*batch)
                    if self._on_stored is not None and batch[2]:
                        self._on_stored(batch[2])
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def add(self, event: Event, packet: tuple[str, bytes] | None = None) -> None:
        """Queue one event (and the packet it refers to); a full batch goes to the database.

        An event this writer has queued before is counted as skipped and not sent again:
        within a run, alerts repeat their stock's history, and a batch without stored ids
        takes the store's fast path. Encoding happens here, in the caller's thread: the
        background thread only sends prepared payloads, never competing for the GIL.
        """
        if not isinstance(event, Event):
            msg = f"not an event: {type(event).__name__} (append takes ledger events)"
            raise EventRejected(msg)
        if self._sent_lately(event.id):
            self._repeat(packet)
            return
        self._queue_row(encode(event), packet)

    def add_row(self, row: StoredRow, packet: tuple[str, bytes] | None = None) -> None:
        """Queue an event encoded already (``ledger.codec.encode``, for example in a worker
        process that built it); repeats are skipped as in :meth:`add`."""
        if self._sent_lately(row.id):
            self._repeat(packet)
            return
        self._queue_row(row, packet)

    def _sent_lately(self, event_id: str) -> bool:
        return event_id in self._sent or event_id in self._sent_before

    def _repeat(self, packet: tuple[str, bytes] | None) -> None:
        self._repeats += 1
        if packet is not None:
            self._packets.append(packet)

    def _queue_row(self, row: StoredRow, packet: tuple[str, bytes] | None) -> None:
        if len(self._sent) >= _REMEMBERED:
            self._sent_before, self._sent = self._sent, set()
        self._sent.add(row.id)
        self._rows.append(row)
        if packet is not None:
            self._packets.append(packet)
        if not self._positions and len(self._rows) >= self.batch_size:
            self._hand_over()

    def keep(self, name: str, after: int) -> None:
        """Keep the position ``name`` too, from ``after`` (its stored position), unless
        this writer keeps it already (a stream's partition seen for the first time)."""
        self._positions.setdefault(name, [after, after])

    @property
    def pending(self) -> bool:
        """Return whether events or position marks wait to be handed over."""
        return bool(self._rows or self._packets) or any(
            marks[1] > marks[0] for marks in self._positions.values()
        )

    def mark(self, position: int, name: str | None = None) -> bool:
        """Mark the end of an item at source ``position`` (tracking writers only), of the
        position ``name`` (default: the writer's ``tracking``): if the batch is full, hand
        it over, moving every marked position to its mark; return True if so."""
        marks = self._positions.get(name if name is not None else self._tracking or "")
        if marks is None:
            raise LedgerError(f"writer: no position {name!r} to mark (add it with keep)")
        marks[1] = max(marks[1], position)
        if len(self._rows) >= self.batch_size:
            self._hand_over()
            return True
        return False

    def extend(self, events: Iterable[Event], packets: Iterable[tuple[str, bytes]] = ()) -> None:
        """Queue several events (and their packets)."""
        self._packets.extend(packets)
        for event in events:
            self.add(event)

    def _hand_over(self) -> None:
        self._raise_pending()
        tracking = []
        for name, marks in self._positions.items():
            if marks[1] > marks[0]:
                tracking.append(Tracking(name, marks[0], marks[1]))
                marks[0] = marks[1]
        if self._rows or self._packets or tracking:
            self._queue.put((self.ledger.prepare_rows(self._rows), self._packets, tracking))
            self._rows, self._packets = [], []
            self.handed_over += 1

    def flush(self) -> AppendResult:
        """Append everything queued so far and wait for it; return the running total."""
        self._hand_over()
        self._queue.join()
        self._raise_pending()
        if self._repeats:
            self.result = self.result + AppendResult(0, self._repeats)
            self._repeats = 0
        return self.result

    def close(self) -> AppendResult:
        """Flush and stop the background thread; return what was appended in all."""
        try:
            return self.flush()
        finally:
            self._stop()

    def _stop(self) -> None:
        self._queue.put(None)
        self._thread.join()
        sys.setswitchinterval(self._old_interval)
        gc.set_threshold(*self._old_gc)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            self.close()
            return
        self._stop()  # leaving on an error: stop without appending the rest
