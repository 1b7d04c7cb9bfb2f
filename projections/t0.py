"""T0 add: packets from sources become AlertReceived and DatapointAdded events (Ingest).

Every packet that decodes has its datapoints appended, whatever the filters decide
(brief invariant 8). A packet that cannot be decoded, or shaped, is recorded with the
reason and its bytes, and ingest goes on. Where ingest is in a source (item and record)
is recorded with each batch, under a name made of the source's key and the shapers, so
an interrupted run resumes there and a source read to its end is not read again.

The channels' filter decisions are a projector of their own (``projections.decide``),
consuming AlertReceived events. Filters are cheap beside decoding, so ingest runs them
on each packet while it is decoded and hands the verdicts over (:class:`Verdicts`): the
projector then needs no second decoding of packets this run read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from skyledger.ledger import AlertReceived, DatapointAdded, Ledger, ProjectionError, digest_bytes
from skyledger.ledger.codec import StoredRow, encode, encode_datapoint
from skyledger.ledger.errors import EncodingError, TrackingConflict
from skyledger.ledger.rows import Tracking
from skyledger.ledger.writer import BatchWriter
from skyledger.projections.identity import tracking_name, unit_identity
from skyledger.projections.pool import Workers, pickled
from skyledger.units import Alert, Blob, Datapoint, Filter, Shaper, Source, Unreadable
from skyledger.units.contracts import Message, Stream, StreamSource
from skyledger.units.sources import iter_blob

__all__ = [
    "FILTER_RAISED",
    "ITEM",
    "UNREADABLE_STREAM",
    "Ingest",
    "IngestStats",
    "PacketShaper",
    "Shaped",
    "Verdict",
    "Verdicts",
    "judge",
    "shape_packet",
    "stored_schema",
]

FILTER_RAISED = -1000  # framework codes are -1000 and below; filters own -1 to -999
UNREADABLE_STREAM = "unreadable"
ITEM = 1_000_000
"""A source position is ``item * ITEM + records``: the items (blobs, or packets) read
whole, and the records read of the next one (an Avro container holds several)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one channel's filter said of an alert, before autocomplete is applied."""

    accepted: bool
    code: int | None
    group: int | None
    reason: str
    duration_s: float


Verdicts = dict[str, tuple[Verdict | None, ...]]
"""Verdicts of the job's filters by packet digest, handed from ingest to the decisions."""


@dataclass(frozen=True, slots=True)
class Shaped:
    """One packet made ready for the ledger: its events encoded, its filters' verdicts.

    Made by :func:`shape_packet`, in this process or in a worker.
    """

    stock: str
    digest: str
    locator: str
    received_id: str
    rows: list[StoredRow]  # AlertReceived first, then the datapoints
    packet: bytes | None  # None: the same bytes as the blob it came from
    kinds: Counter[str]
    error: str | None  # why the packet could not be read or shaped
    verdicts: tuple[Verdict | None, ...]  # one per channel (None: no filter); () on error
    schema: tuple[str, bytes] | None = None
    """The registry's writer schema it was decoded with, to keep: (digest, JSON text)."""


def datapoint_row(point: Datapoint, cause: tuple[str, ...], run_id: str) -> StoredRow:
    """Return the stored DatapointAdded row of a shaper's datapoint: built directly when
    its values are of the event's field types (the bulk of ingest), else through the
    event (which validates them and names what is wrong)."""
    plain = type(point.stock) is str and type(point.id) is str and type(point.body) is dict
    if plain and point.stock:
        try:
            return encode_datapoint(point.stock, point.id, point.kind, point.body, cause, run_id)
        except EncodingError:
            pass  # the event below says why
    added = DatapointAdded(
        stream=point.stock, datapoint_id=point.id, kind=point.kind, body=point.body,
        causation=cause, run_id=run_id,
    )  # fmt: skip
    return encode(added)


def stored_schema(ledger: Ledger, alert: AlertReceived) -> str | None:
    """Return the writer schema a registry gave for an alert's packet, as kept with the
    packets (None for the packets skyledger decodes on its own); raise ProjectionError if
    it is not kept."""
    if alert.schema_digest is None:
        return None
    text = ledger.packet(alert.schema_digest)
    if text is None:
        msg = (
            f"cannot decode alert {alert.alert_id} ({alert.locator}) again: the writer schema "
            f"{alert.schema_digest} its schema registry gave is not kept"
        )
        raise ProjectionError(msg)
    return text.decode()


def judge(filters: Sequence[Filter | None], alert: Alert) -> tuple[Verdict | None, ...]:
    """Return each filter's verdict on an alert (None for a channel without a filter)."""
    return tuple(None if f is None else _verdict(f, alert) for f in filters)


def _verdict(unit: Filter, alert: Alert) -> Verdict:
    started = time.perf_counter()
    try:
        d = unit.decide(alert)
        accepted, code, group, reason = d.accepted, d.code, d.group, d.reason
    except Exception as exc:
        accepted, code, group, reason = False, FILTER_RAISED, None, f"{type(exc).__name__}: {exc}"
    return Verdict(accepted, code, group, reason, time.perf_counter() - started)


def shape_packet(
    item: Alert | Unreadable,
    shapers: Mapping[str, Shaper],
    filters: Sequence[Filter | None],
    run_id: str,
    source: str,
    cause: tuple[str, ...] = (),
    schema: str | None = None,
) -> Shaped:
    """Decide and encode everything one packet says that needs no other packet.

    ``cause`` is the causation of the AlertReceived event (the run that read it);
    ``schema`` the writer schema a registry gave for it (kept, so that the packet can be
    decoded again: see :func:`stored_schema`).
    """
    if isinstance(item, Unreadable):
        event = AlertReceived(
            stream=UNREADABLE_STREAM, digest=item.digest, source=source,
            locator=item.locator, error=item.reason, run_id=run_id, causation=cause,
        )  # fmt: skip
        return Shaped(UNREADABLE_STREAM, item.digest, item.locator, event.id, [encode(event)],
                      item.packet, Counter(), item.reason, ())  # fmt: skip
    shaper = shapers.get(item.survey)
    points: list[Datapoint] = []
    error = None
    if shaper is None:
        error = f"no shaper for survey {item.survey!r} in the job"
    else:
        try:
            points = shaper.shape(item)
        except Exception as exc:
            error = f"shaper {shaper.name} failed: {type(exc).__name__}: {exc}"
    kept = None
    if schema is not None and error is None:
        text = schema.encode()
        kept = (digest_bytes(text), text)
    received = AlertReceived(
        stream=item.stock if error is None else UNREADABLE_STREAM, digest=item.digest,
        source=source, locator=item.locator, alert_id=item.alert_id, schema_name=item.schema,
        error=error, run_id=run_id, causation=cause,
        schema_digest=None if kept is None else kept[0],
    )  # fmt: skip
    rows = [encode(received)]
    if error is not None:
        return Shaped(received.stream, item.digest, item.locator, received.id, rows, item.packet,
                      Counter(), error, ())  # fmt: skip
    alert_cause = (received.id,)
    kinds: Counter[str] = Counter()
    for point in points:
        kinds[point.kind] += 1
        rows.append(datapoint_row(point, alert_cause, run_id))
    verdicts = judge(filters, item)
    return Shaped(item.stock, item.digest, item.locator, received.id, rows, item.packet, kinds,
                  None, verdicts, kept)  # fmt: skip


@dataclass
class PacketShaper:
    """Decodes, shapes and judges blobs: what a T0 worker process does with a chunk."""

    shapers: Mapping[str, Shaper]
    filters: Sequence[Filter | None]
    run_id: str
    source: str
    cause: tuple[str, ...]

    def shape(self, item: Alert | Unreadable, schema: str | None = None) -> Shaped:
        """Return one packet shaped (``schema``: see :func:`shape_packet`)."""
        return shape_packet(item, self.shapers, self.filters, self.run_id, self.source,
                            self.cause, schema)  # fmt: skip

    def shape_chunk(self, chunk: Sequence[Blob | Unreadable]) -> list[list[Shaped]]:
        """Return, for each blob of a chunk, its packets shaped."""
        done = []
        for item in chunk:
            packets: list[Alert | Unreadable] = (
                [item]
                if isinstance(item, Unreadable)
                else list(iter_blob(item.data, item.locator, item.schema))
            )
            shaped = []
            schema = item.schema if isinstance(item, Blob) else None
            for packet in packets:
                one = self.shape(packet, schema)
                if isinstance(item, Blob) and one.packet == item.data:
                    one = replace(one, packet=None)  # the caller has these bytes already
                shaped.append(one)
            done.append(shaped)
        return done


@dataclass
class IngestStats:
    """What ingest saw: packets read, unreadable ones by reason, datapoints by kind."""

    alerts: int = 0
    unreadable: int = 0
    datapoints: Counter[str] = field(default_factory=Counter)
    stocks: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)
    resumed: dict[str, int] = field(default_factory=dict)  # source -> position resumed at
    partitions: dict[str, int] = field(default_factory=dict)  # stream partition -> resumed at
    notes: list[str] = field(default_factory=list)  # what a reader of the summary must know
    appended: int = 0  # events new to the ledger
    read: Counter[str] = field(default_factory=Counter)  # source -> packets read
    unreadable_inputs: list[str] = field(default_factory=list)  # where, and why


_Item = TypeVar("_Item", Blob | Unreadable, Message)
_CHUNK_BYTES = 2_000_000  # about 25 ZTF packets with cutouts
_CHUNK_BLOBS = 64


class Ingest:
    """Appends what packets say, in batches, with where it is in each source."""

    def __init__(
        self,
        ledger: Ledger,
        shapers: Mapping[str, Shaper],
        filters: Sequence[Filter | None],
        run_id: str,
        verdicts: Verdicts,
        cause: tuple[str, ...] = (),
        batch_size: int = 5000,
        workers: Workers | None = None,
    ) -> None:
        self.ledger = ledger
        self.shapers = dict(shapers)
        self.filters = list(filters)
        self.run_id = run_id
        self.verdicts = verdicts
        self.cause = cause
        self.batch_size = batch_size
        self.workers = workers
        self.stats = IngestStats()
        self._schemas: set[str] = set()  # digests of registry schemas kept by this process

    def tracking_name(self, source: Source) -> str:
        """Return the name of the position in a source: its key and the shapers."""
        return self.stream_tracking_name(source.key())

    def run(
        self,
        source: Source,
        label: str,
        on_batch: Callable[[], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> IngestStats:
        """Ingest one source from where an earlier run stopped; ``on_batch`` is called
        after each batch is handed to the ledger (the decisions catch up there)."""
        name = self.tracking_name(source)
        after = self.ledger.tracked(name)
        if after:
            self.stats.resumed[label] = after
        first, skip = divmod(after, ITEM)
        shaper = PacketShaper(self.shapers, self.filters, self.run_id, label, self.cause)
        with self.ledger.writer(self.batch_size, tracking=name, after=after) as out:
            for index, blob, shaped in self._items(source, shaper, first):
                last = len(shaped) - 1
                for record, one in enumerate(shaped):
                    if index == first and record < skip:
                        continue
                    self._take(out, one, blob)
                    self.stats.read[label] += 1
                    if progress is not None:
                        progress(1)
                    done = (index + 1) * ITEM  # the whole item, or part of it:
                    at = done if record >= last else index * ITEM + min(record + 1, ITEM - 1)
                    if out.mark(at) and on_batch:
                        on_batch()
                if not shaped and out.mark((index + 1) * ITEM) and on_batch:
                    on_batch()
        self.stats.appended += out.result.appended
        return self.stats

    def run_stream(
        self,
        source: StreamSource,
        label: str,
        on_batch: Callable[[], None] | None = None,
        progress: Callable[[int], None] | None = None,
        *,
        to_end: bool = True,
        stop: Callable[[], bool] | None = None,
        max_alerts: int | None = None,
        until_ms: int | None = None,
    ) -> IngestStats:
        """Ingest a partitioned stream (Kafka), each partition from the ledger's position.

        Each partition's position (the offset after the last message appended, under
        :meth:`stream_tracking_name` of the partition's name) moves with the events of
        each batch, in the same transaction; the stream asks for them whenever
        partitions are assigned to this process, so a crash neither loses nor doubles a
        message. If another process of the group appended some of a batch's messages
        first (a rebalance), the batch fails whole and every partition is read again
        from the ledger's positions. Stops at the end of the partitions (``to_end``),
        after ``max_alerts`` messages, at the first message of each partition written
        at or after ``until_ms``, or when ``stop()`` says so (live: ``to_end`` False,
        and each poll's messages are appended, decided and committed before the next).
        """
        reading = _StreamReading(self, source, to_end, stop, max_alerts, until_ms)
        try:
            while True:
                try:
                    self._stream_pass(reading, label, on_batch, progress)
                    return self.stats
                except TrackingConflict:
                    reading.rewind()  # another process took some of them first
        finally:
            reading.close()

    def _stream_pass(
        self,
        reading: _StreamReading,
        label: str,
        on_batch: Callable[[], None] | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Read, shape and append until the stream's end (or a stop), in one writer."""
        shaper = PacketShaper(self.shapers, self.filters, self.run_id, label, self.cause)
        sent: deque[list[Message]] = deque()

        def blobs() -> Iterator[list[Blob | Unreadable]]:
            for chunk in reading.chunks():
                sent.append(chunk)
                yield [m.blob for m in chunk]

        with self.ledger.writer(self.batch_size, on_stored=reading.on_stored) as out:
            for _, shaped in self._shaped(shaper, blobs()):
                messages = sent.popleft()
                if not messages:  # the end of a poll: live appends what it has
                    if out.pending:
                        out.flush()
                        if on_batch:
                            on_batch()
                        reading.commit()
                    continue
                for message, packets in zip(messages, shaped, strict=True):
                    name = reading.keep(out, message.partition)
                    blob = message.blob.data if isinstance(message.blob, Blob) else None
                    for one in packets:
                        self._take(out, one, blob)
                        self.stats.read[label] += 1
                    if progress is not None:
                        progress(1)
                    reading.marked[name] = message.offset + 1
                    if out.mark(message.offset + 1, name) and on_batch:
                        on_batch()
        self.stats.appended += out.result.appended
        reading.commit()

    def stream_tracking_name(self, stream_key: str) -> str:
        """Return the name of the position in a source or a stream of packets (a NATS
        stream and subject, say) known by ``stream_key``: the key and the shapers."""
        shapers = {survey: unit_identity(s) for survey, s in sorted(self.shapers.items())}
        return tracking_name("t0", stream_key, shapers)

    def take(
        self,
        blobs: Sequence[Blob],
        label: str,
        positions: Sequence[int],
        tracking: str,
        after: int,
    ) -> None:
        """Append what blobs received from a stream say (a message each) with the stream
        position of the last one (``positions``: each blob's), moving the position
        ``tracking`` from ``after`` in the same transaction: an interrupted batch is
        taken again from there, in order, and a batch another process took first fails
        with TrackingConflict, storing nothing."""
        shaper = PacketShaper(self.shapers, self.filters, self.run_id, label, self.cause)
        done = self._shaped(shaper, _chunks(iter(blobs)))
        at = iter(positions)
        size = max(self.batch_size, len(blobs) * 100)  # one transaction for the batch
        with self.ledger.writer(size, tracking=tracking, after=after) as out:
            for chunk, shaped in done:
                for item, packets in zip(chunk, shaped, strict=True):
                    for one in packets:
                        self._take(out, one, item.data if isinstance(item, Blob) else None)
                        self.stats.read[label] += 1
                    out.mark(next(at))
        self.stats.appended += out.result.appended

    def _items(
        self, source: Source, shaper: PacketShaper, first: int
    ) -> Iterator[tuple[int, bytes | None, list[Shaped]]]:
        """Yield (item index, blob bytes, its packets shaped) from item ``first`` on."""
        blobs = source.blobs(first)
        if blobs is None:
            for index, packet in enumerate(source.packets()):
                if index >= first:
                    yield index, None, [shaper.shape(packet)]
            return
        index = first
        for chunk, shaped in self._shaped(shaper, _chunks(blobs)):
            for item, packets in zip(chunk, shaped, strict=True):
                yield index, (item.data if isinstance(item, Blob) else None), packets
                index += 1

    def _shaped(
        self, shaper: PacketShaper, chunks: Iterator[list[Blob | Unreadable]]
    ) -> Iterator[tuple[list[Blob | Unreadable], list[list[Shaped]]]]:
        """Yield each chunk with its blobs' packets shaped, in order: in the worker
        processes if there are any (several chunks in flight), else here."""
        if self.workers is None:
            return ((chunk, shaper.shape_chunk(chunk)) for chunk in chunks)
        spec = pickled(shaper, "workers: the job's shapers and filters")
        return self.workers.map(spec, "shape_chunk", chunks)

    def _take(self, out: BatchWriter, shaped: Shaped, blob: bytes | None) -> None:
        """Queue one shaped packet's events and keep its verdicts for the decisions."""
        packet = shaped.packet if shaped.packet is not None else blob
        rows = shaped.rows
        out.add_row(rows[0], (shaped.digest, packet if packet is not None else b""))
        stats = self.stats
        if shaped.error is not None:
            stats.unreadable += 1
            stats.reasons[shaped.error.split(":")[0]] += 1
            if len(stats.unreadable_inputs) < 100:
                stats.unreadable_inputs.append(f"{shaped.locator}: {shaped.error}")
            return
        if shaped.schema is not None and shaped.schema[0] not in self._schemas:
            self._schemas.add(shaped.schema[0])  # a registry's schema: kept once, by digest
            out.extend([], [shaped.schema])
        stats.alerts += 1
        stats.stocks.add(shaped.stock)
        stats.datapoints.update(shaped.kinds)
        for row in rows[1:]:
            out.add_row(row)
        self.verdicts[shaped.digest] = shaped.verdicts


class _StreamReading:
    """One stream read by :meth:`Ingest.run_stream`: its positions in the ledger, what
    this process marked, what the ledger holds (to tell the broker), and when to stop."""

    def __init__(
        self,
        ingest: Ingest,
        source: StreamSource,
        to_end: bool,
        stop: Callable[[], bool] | None,
        max_alerts: int | None,
        until_ms: int | None,
    ) -> None:
        self.ingest = ingest
        self.to_end = to_end
        self.stop = stop or (lambda: False)
        self.max_alerts = max_alerts
        self.until_ms = until_ms
        self.names: dict[str, str] = {}  # partition -> tracking name
        self.partitions: dict[str, str] = {}  # tracking name -> partition
        self.stored_at: dict[str, int] = {}  # tracking name -> the ledger's, when assigned
        self.marked: dict[str, int] = {}  # tracking name -> last marked by this process
        self.read = 0
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._to_commit: dict[str, int] = {}
        self.stream: Stream = source.open(self.start)

    def start(self, partitions: Sequence[str]) -> dict[str, int]:
        """Return where to read each partition from: the ledger's position, or further
        if this process marked more (a partition handed back to it while in flight)."""
        ingest = self.ingest
        for partition in partitions:
            name = ingest.stream_tracking_name(partition)
            self.names[partition], self.partitions[name] = name, partition
        stored = ingest.ledger.tracked_many(self.names[p] for p in partitions)
        found = {}
        for partition in partitions:
            name = self.names[partition]
            self.stored_at[name] = stored[name]
            at = max(stored[name], self.marked.get(name, 0))
            if at:
                found[partition] = at
                ingest.stats.partitions.setdefault(partition, at)
        return found

    def keep(self, out: BatchWriter, partition: str) -> str:
        """Return a partition's tracking name, kept by the writer from the ledger's."""
        name = self.names[partition]
        out.keep(name, self.stored_at[name])
        return name

    def chunks(self) -> Iterator[list[Message]]:
        """Yield the messages to take in chunks, and an empty chunk after each poll."""
        stream = self.stream
        while not self.stop():
            self.commit()
            if self.to_end and stream.at_end():
                return
            kept = []
            for message in stream.poll(500, 0.2):
                if message.partition in self._held:
                    continue
                stamp = message.timestamp_ms
                if self.until_ms is not None and stamp is not None and stamp >= self.until_ms:
                    self._held.add(message.partition)
                    stream.hold(message.partition)
                    continue
                kept.append(message)
                self.read += 1
                if self.max_alerts is not None and self.read >= self.max_alerts:
                    break
            yield from _chunks(kept)
            if not self.to_end:
                yield []  # live: what this poll gave is appended before the next
            if self.max_alerts is not None and self.read >= self.max_alerts:
                return

    def on_stored(self, moves: Sequence[Tracking]) -> None:
        """Note what the ledger holds now (called by the writer's thread)."""
        with self._lock:
            for move in moves:
                if move.name in self.partitions:
                    self._to_commit[move.name] = move.position

    def commit(self) -> None:
        """Tell the broker the offsets the ledger holds."""
        with self._lock:
            moves, self._to_commit = self._to_commit, {}
        if moves:
            self.stream.stored({self.partitions[name]: at for name, at in moves.items()})

    def rewind(self) -> None:
        """After a batch another process took first: read on from the ledger's positions."""
        self.marked.clear()
        self.read = 0
        self.ingest.stats.notes.append(
            "a batch was taken first by another process of the group; read again from "
            "the ledger's positions"
        )
        self.stream.rewind()

    def close(self) -> None:
        """Leave the stream, noting the errors its client got over."""
        self.stream.close()
        errors = self.stream.errors
        if errors:
            self.ingest.stats.notes.append(
                f"the stream's client met {len(errors)} errors and got over them (a broker "
                f"restarting, say); the last: {errors[-1]}"
            )


def _chunks(items: Iterable[_Item]) -> Iterator[list[_Item]]:
    """Yield ``items`` (blobs, or stream messages holding them) in chunks of at most
    ``_CHUNK_BLOBS`` items, cut once the blobs' bytes reach ``_CHUNK_BYTES``."""
    chunk: list[_Item] = []
    size = 0
    for item in items:
        chunk.append(item)
        blob = item.blob if isinstance(item, Message) else item
        size += len(blob.data) if isinstance(blob, Blob) else 0
        if size >= _CHUNK_BYTES or len(chunk) >= _CHUNK_BLOBS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
