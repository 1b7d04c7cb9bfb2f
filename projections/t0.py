"""T0 ingest: packets become AlertReceived, DatapointAdded and FilterDecided events.

Every packet that decodes has its datapoints appended, whatever the filters decide
(brief invariant 8): filters only decide which channels follow the stock. A packet that
cannot be decoded, or shaped, is recorded with the reason and its bytes, and ingest goes
on. A filter that raises rejects the alert for its channel with code -1000 and the error.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ledger import (
    AlertReceived,
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    Provenance,
)
from units import Alert, Datapoint, Filter, Shaper, Unit, Unreadable

__all__ = ["FILTER_RAISED", "Channel", "Ingest", "IngestStats", "provenance"]

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


class Ingest:
    """Appends what packets say, with each channel's decision, in batches."""

    def __init__(
        self,
        ledger: Ledger,
        channels: Iterable[Channel],
        shapers: Mapping[str, Shaper],
        run_id: str,
        batch_size: int = 5000,
    ) -> None:
        self.ledger = ledger
        self.channels = list(channels)
        self.shapers = dict(shapers)
        self.run_id = run_id
        self.batch_size = batch_size
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
    ) -> IngestStats:
        """Ingest packets from one source; return the running statistics."""
        with self.ledger.writer(batch_size=self.batch_size) as out:
            for packet in packets:
                if isinstance(packet, Unreadable):
                    self._unreadable(out.add, packet, source)
                else:
                    self._alert(out.add, packet, source)
                if progress is not None:
                    progress(1)
        return self.stats

    def _unreadable(self, add: Callable[..., None], packet: Unreadable, source: str) -> None:
        self.stats.unreadable += 1
        self.stats.reasons[packet.reason.split(":")[0]] += 1
        event = AlertReceived(
            stream=UNREADABLE_STREAM,
            digest=packet.digest,
            source=source,
            locator=packet.locator,
            error=packet.reason,
            run_id=self.run_id,
        )
        add(event, (packet.digest, packet.packet))

    def _alert(self, add: Callable[..., None], alert: Alert, source: str) -> None:
        shaper = self.shapers.get(alert.survey)
        points: list[Datapoint] = []
        error = None
        if shaper is None:
            error = f"no shaper for survey {alert.survey!r} in the job"
        else:
            try:
                points = shaper.shape(alert)
            except Exception as exc:
                error = f"shaper {shaper.name} failed: {type(exc).__name__}: {exc}"
        received = AlertReceived(
            stream=alert.stock if error is None else UNREADABLE_STREAM,
            digest=alert.digest,
            source=source,
            locator=alert.locator,
            alert_id=alert.alert_id,
            schema_name=alert.schema,
            error=error,
            run_id=self.run_id,
        )
        add(received, (alert.digest, alert.packet))
        if error is not None:
            self.stats.unreadable += 1
            self.stats.reasons[error.split(":")[0]] += 1
            return
        self.stats.alerts += 1
        self.stats.stocks.add(alert.stock)
        cause = (received.id,)
        for point in points:
            self.stats.datapoints[point.kind] += 1
            add(
                DatapointAdded(
                    stream=point.stock,
                    datapoint_id=point.id,
                    kind=point.kind,
                    body=point.body,
                    causation=cause,
                    run_id=self.run_id,
                )
            )
        for channel in self.channels:
            add(self._decide(channel, alert, cause))

    def _decide(self, channel: Channel, alert: Alert, cause: tuple[str, ...]) -> Event:
        unit = channel.filter
        started = time.perf_counter()
        accepted, code, group, reason = True, None, None, ""
        if unit is not None:
            try:
                decision = unit.decide(alert)
                accepted, code, group = decision.accepted, decision.code, decision.group
                reason = decision.reason
            except Exception as exc:
                accepted, code, reason = False, FILTER_RAISED, f"{type(exc).__name__}: {exc}"
        followed = self.followed.get(channel.name)
        if not accepted and followed is not None and alert.stock in followed:
            accepted, code, reason = True, None, f"autocomplete (filter said {code}: {reason})"
        if accepted:
            self.stats.accepted[channel.name] += 1
            if followed is not None:
                followed.add(alert.stock)
        else:
            self.stats.rejected[f"{channel.name} {code}"] += 1
        prov = provenance(unit, time.perf_counter() - started) if unit else _ACCEPT_ALL
        return FilterDecided(
            stream=alert.stock,
            channel=channel.name,
            alert_digest=alert.digest,
            accepted=accepted,
            code=code,
            group=group,
            reason=reason,
            provenance=prov,
            causation=cause,
            run_id=self.run_id,
        )


_ACCEPT_ALL = Provenance(unit="(no filter)", unit_version="-", unit_digest="-", config="-")
