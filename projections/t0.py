"""T0 ingest: packets become AlertReceived, DatapointAdded and FilterDecided events.

Every packet that decodes has its datapoints appended, whatever the filters decide
(brief invariant 8): filters only decide which channels follow the stock. A packet that
cannot be decoded, or shaped, is recorded with the reason and its bytes, and ingest goes
on. A filter that raises rejects the alert for its channel with code -1000 and the error.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ledger import AlertReceived, DatapointAdded, Event, FilterDecided, Ledger, Provenance
from ledger.codec import StoredRow, encode
from ledger.writer import BatchWriter
from units import Alert, Blob, Datapoint, Filter, Shaper, Unit, Unreadable

__all__ = [
    "FILTER_RAISED",
    "Channel",
    "Ingest",
    "IngestStats",
    "Shaped",
    "Verdict",
    "provenance",
    "shape_packet",
]

FILTER_RAISED = -1000  # framework codes are -1000 and below; filters own -1 to -999
UNREADABLE_STREAM = "unreadable"


def provenance(unit: Unit, duration_s: float = 0.0) -> Provenance:
    """Return the provenance record of a unit instance."""
    return Provenance(
        unit=unit.name,
        unit_version=unit.version,
        unit_digest=unit.digest(),
        config=unit.config_hash,
        duration_s=round(duration_s, 6),
    )


@dataclass(frozen=True)
class Channel:
    """A channel as T0 sees it: a name, a filter (None accepts all), autocomplete."""

    name: str
    filter: Filter | None = None
    autocomplete: bool = False


@dataclass
class IngestStats:
    """What ingest saw and did."""

    alerts: int = 0
    unreadable: int = 0
    datapoints: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    stocks: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one channel's filter said of an alert, before autocomplete is applied."""

    accepted: bool
    code: int | None
    group: int | None
    reason: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Shaped:
    """One packet made ready for the ledger: its events encoded, its filters' verdicts.

    Made by :func:`shape_packet`, in this process or in a worker (``projections.pool``);
    what depends on earlier alerts (autocomplete) is left to :class:`Ingest`.
    """

    stock: str
    digest: str
    received_id: str
    rows: list[StoredRow]  # AlertReceived first, then the datapoints
    packet: bytes | None  # None: the same bytes as the blob it came from
    kinds: Counter[str]
    error: str | None  # why the packet could not be read or shaped
    verdicts: tuple[Verdict | None, ...]  # one per channel (None: no filter); () on error


def shape_packet(
    item: Alert | Unreadable,
    shapers: Mapping[str, Shaper],
    filters: Sequence[Filter | None],
    run_id: str,
    source: str,
) -> Shaped:
    """Decide and encode everything one packet says that needs no other packet."""
    if isinstance(item, Unreadable):
        event = AlertReceived(
            stream=UNREADABLE_STREAM, digest=item.digest, source=source,
            locator=item.locator, error=item.reason, run_id=run_id,
        )  # fmt: skip
        return Shaped(UNREADABLE_STREAM, item.digest, event.id, [encode(event)], item.packet,
                      Counter(), item.reason, ())  # fmt: skip
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
    received = AlertReceived(
        stream=item.stock if error is None else UNREADABLE_STREAM, digest=item.digest,
        source=source, locator=item.locator, alert_id=item.alert_id, schema_name=item.schema,
        error=error, run_id=run_id,
    )  # fmt: skip
    rows = [encode(received)]
    if error is not None:
        return Shaped(received.stream, item.digest, received.id, rows, item.packet, Counter(),
                      error, ())  # fmt: skip
    cause = (received.id,)
    kinds: Counter[str] = Counter()
    for point in points:
        kinds[point.kind] += 1
        added = DatapointAdded(
            stream=point.stock, datapoint_id=point.id, kind=point.kind, body=point.body,
            causation=cause, run_id=run_id,
        )  # fmt: skip
        rows.append(encode(added))
    verdicts = tuple(None if f is None else _verdict(f, item) for f in filters)
    return Shaped(item.stock, item.digest, received.id, rows, item.packet, kinds, None, verdicts)


def _verdict(unit: Filter, alert: Alert) -> Verdict:
    started = time.perf_counter()
    try:
        d = unit.decide(alert)
        accepted, code, group, reason = d.accepted, d.code, d.group, d.reason
    except Exception as exc:
        accepted, code, group, reason = False, FILTER_RAISED, None, f"{type(exc).__name__}: {exc}"
    return Verdict(accepted, code, group, reason, time.perf_counter() - started)


class Ingest:
    """Appends what packets say, with each channel's decision, in batches.

    With ``workers`` above 1, sources that yield undecoded blobs are decoded, shaped,
    filtered and encoded in that many worker processes (``projections.pool``), in order;
    this process applies autocomplete and appends. Other sources are handled here.
    """

    def __init__(
        self,
        ledger: Ledger,
        channels: Iterable[Channel],
        shapers: Mapping[str, Shaper],
        run_id: str,
        batch_size: int = 5000,
        workers: int = 1,
    ) -> None:
        self.ledger = ledger
        self.channels = list(channels)
        self.shapers = dict(shapers)
        self.filters = [c.filter for c in self.channels]
        self.run_id = run_id
        self.batch_size = batch_size
        self.workers = workers
        self.followed = self._followed_stocks()
        self.stats = IngestStats()

    def _followed_stocks(self) -> dict[str, set[str]]:
        """Return, per autocomplete channel, the stocks it has accepted before."""
        names = {c.name for c in self.channels if c.autocomplete}
        followed: dict[str, set[str]] = {name: set() for name in names}
        if names:
            for event in self.ledger.read(types=[FilterDecided]):
                if isinstance(event, FilterDecided) and event.accepted and event.channel in names:
                    followed[event.channel].add(event.stream)
        return followed

    def run(
        self,
        packets: Iterable[Alert | Unreadable],
        source: str,
        progress: Callable[[int], None] | None = None,
        blobs: Iterable[Blob | Unreadable] | None = None,
    ) -> IngestStats:
        """Ingest packets from one source (or its undecoded ``blobs``, in worker processes
        when ``workers`` > 1); return the running statistics."""
        with self.ledger.writer(batch_size=self.batch_size) as out:
            if blobs is not None and self.workers > 1:
                from projections.pool import ShapingPool  # here: pool imports this module

                with ShapingPool(self.workers, self.shapers, self.filters, self.run_id,
                                 source) as pool:  # fmt: skip
                    for blob, shaped in pool.shape(blobs):
                        for one in shaped:
                            self._take(out, one, blob)
                            if progress is not None:
                                progress(1)
            else:
                for packet in packets:
                    one = shape_packet(packet, self.shapers, self.filters, self.run_id, source)
                    self._take(out, one, None)
                    if progress is not None:
                        progress(1)
        return self.stats

    def _take(self, out: BatchWriter, shaped: Shaped, blob: bytes | None) -> None:
        """Append one shaped packet and its channels' decisions."""
        packet = shaped.packet if shaped.packet is not None else blob
        rows = shaped.rows
        out.add_row(rows[0], (shaped.digest, packet if packet is not None else b""))
        stats = self.stats
        if shaped.error is not None:
            stats.unreadable += 1
            stats.reasons[shaped.error.split(":")[0]] += 1
            return
        stats.alerts += 1
        stats.stocks.add(shaped.stock)
        stats.datapoints.update(shaped.kinds)
        for row in rows[1:]:
            out.add_row(row)
        cause = (shaped.received_id,)
        for channel, verdict in zip(self.channels, shaped.verdicts, strict=True):
            out.add(self._decide(channel, verdict, shaped, cause))

    def _decide(
        self, channel: Channel, verdict: Verdict | None, shaped: Shaped, cause: tuple[str, ...]
    ) -> Event:
        accepted, code, group, reason = True, None, None, ""
        if verdict is not None:
            accepted, code, group = verdict.accepted, verdict.code, verdict.group
            reason = verdict.reason
        followed = self.followed.get(channel.name)
        if not accepted and followed is not None and shaped.stock in followed:
            accepted, code, reason = True, None, f"autocomplete (filter said {code}: {reason})"
        if accepted:
            self.stats.accepted[channel.name] += 1
            if followed is not None:
                followed.add(shaped.stock)
        else:
            self.stats.rejected[f"{channel.name} {code}"] += 1
        unit = channel.filter
        prov = provenance(unit, verdict.duration_s) if unit and verdict else _ACCEPT_ALL
        return FilterDecided(
            stream=shaped.stock, channel=channel.name, alert_digest=shaped.digest,
            accepted=accepted, code=code, group=group, reason=reason, provenance=prov,
            causation=cause, run_id=self.run_id,
        )  # fmt: skip


_ACCEPT_ALL = Provenance(unit="(no filter)", unit_version="-", unit_digest="-", config="-")
