"""A stock's log as of a position: its datapoints and the decisions on its alerts.

Every tier after T0 asks the same questions of one stock, as things stood at one alert:
which datapoints the ledger knew then, which channels of a job followed the stock, into
which groups. :class:`StockLog` answers them from the stock's ``DatapointAdded`` and
``FilterDecided`` events read up to a position (``read_stocks``). Answers depend only on
the ordered log, never on when or in which batches a projector reads it.

A channel is its name, its filter's identity and whether it autocompletes
(:class:`ChannelKey`); a job owns the decisions of its own channels, so jobs sharing a
ledger never act on each other's decisions, and jobs with the same channel share them.

A stock's datapoints are those made at ingest, unless the job replays another shaper
for the stock's survey (:class:`Shaping`): then they are those that shaper made from
the stored packets (``DatapointAdded.shaper``, its tag), appended after the alerts they
come from, and what was known at an alert is what its own and earlier alerts gave.
Datapoints of different shapers never meet in one state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from skyledger.ledger import (
    AlertReceived,
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    Provenance,
    StateCombined,
)
from skyledger.units import Datapoint, latest_bodies, survey_of

__all__ = [
    "ChannelKey",
    "Channels",
    "Shaping",
    "StockLog",
    "alert_position",
    "read_stocks",
]


@dataclass(frozen=True)
class Shaping:
    """Which datapoints a job reads: per survey, the tag of the replayed shaper whose
    datapoints it reads (a survey not named: those made at ingest)."""

    tags: tuple[tuple[str, str], ...] = ()  # (survey, tag), sorted

    def __bool__(self) -> bool:
        return bool(self.tags)

    def tag_of(self, stock: str) -> str | None:
        """Return the tag of the datapoints a stock's log holds (None: ingest's)."""
        return dict(self.tags).get(survey_of(stock))

    def as_json(self) -> list[list[str]]:
        """Return the tags as JSON-compatible data (for tracking names)."""
        return [list(t) for t in self.tags]


class ChannelKey(NamedTuple):
    """What makes a channel's decisions its own: name, filter identity, autocomplete."""

    name: str
    filter: tuple[str, str, str, str]  # unit, version, code digest, configuration hash
    autocomplete: bool

    @classmethod
    def of(cls, name: str, filter_provenance: Provenance, autocomplete: bool) -> ChannelKey:
        """Return the key of a channel with a filter of this provenance."""
        p = filter_provenance
        return cls(name, (p.unit, p.unit_version, p.unit_digest, p.config), autocomplete)

    @classmethod
    def of_decision(cls, d: FilterDecided) -> ChannelKey:
        """Return the key of the channel that made a decision."""
        return cls.of(d.channel, d.provenance, d.autocomplete)

    def as_json(self) -> list[Any]:
        """Return the key as JSON-compatible data (for hashing into tracking names)."""
        return [self.name, list(self.filter), self.autocomplete]


@dataclass(frozen=True)
class Channels:
    """The channels of one job (or a selection of them): which decisions are theirs."""

    keys: frozenset[ChannelKey]

    def owns(self, event: Event) -> bool:
        """Return True for a decision made by one of these channels."""
        return isinstance(event, FilterDecided) and ChannelKey.of_decision(event) in self.keys

    def only(self, names: Collection[str] | None) -> Channels:
        """Return the channels among these whose names are in ``names`` (None: all)."""
        if names is None:
            return self
        return Channels(frozenset(k for k in self.keys if k.name in names))

    @property
    def names(self) -> list[str]:
        """Return the channel names, sorted."""
        return sorted(k.name for k in self.keys)


def alert_position(event: Event) -> int | None:
    """Return the position of the alert an event is about: an AlertReceived's own, a
    decision's or a state's alert's (for those of schema version 1, which do not record
    it, the event's own position: a later bound, never earlier); None for other events."""
    if isinstance(event, AlertReceived):
        return event.position
    if isinstance(event, FilterDecided | StateCombined):
        return event.alert_position if event.alert_position is not None else event.position
    return None


@dataclass
class StockLog:
    """One stock's datapoints and decisions, in log order, up to the position read."""

    stock: str
    datapoints: list[DatapointAdded] = field(default_factory=list)
    decisions: list[FilterDecided] = field(default_factory=list)
    tag: str | None = None  # the shaper whose datapoints these are (None: ingest's)
    alerts: dict[str, int] = field(default_factory=dict)  # alert event id -> position
    alert_ids: dict[str, str | None] = field(default_factory=dict)  # -> the survey's id

    @classmethod
    def of(cls, stock: str, events: Iterable[Event], shaping: Shaping | None = None) -> StockLog:
        """Return the log of a stock from its events (in position order): the datapoints
        of the shaping's shaper for the stock's survey."""
        log = cls(stock, tag=shaping.tag_of(stock) if shaping else None)
        for event in events:
            if isinstance(event, DatapointAdded):
                if event.shaper == log.tag:
                    log.datapoints.append(event)
            elif isinstance(event, FilterDecided):
                log.decisions.append(event)
            elif isinstance(event, AlertReceived):
                log.alerts[event.id] = event.position or 0
                log.alert_ids[event.id] = event.alert_id
        return log

    def decisions_on(self, alert: str, channels: Channels) -> list[FilterDecided]:
        """Return the channels' decisions on one alert (AlertReceived id), in log order."""
        return [d for d in self.decisions if d.alert == alert and channels.owns(d)]

    def accepted_on(self, alert: str, channels: Channels) -> list[FilterDecided]:
        """Return the channels' acceptances of one alert, in log order."""
        return [d for d in self.decisions_on(alert, channels) if d.accepted]

    def accepted_until(self, position: int, channels: Channels) -> list[FilterDecided]:
        """Return the channels' acceptances of this stock's alerts at or before a position."""
        return [
            d
            for d in self.decisions
            if d.accepted and (alert_position(d) or 0) <= position and channels.owns(d)
        ]

    def follows(self, alert: str | None, alert_position: int | None, channels: Channels) -> bool:
        """Return True if a channel accepted the stock at this alert (for a state made
        before states named their alert: at any alert up to the position given)."""
        if alert is None:
            return bool(self.accepted_until(alert_position or 0, channels))
        return bool(self.accepted_on(alert, channels))

    def groups(self, alert_position: int, channels: Channels) -> set[int]:
        """Return the groups the channels accepted the stock into, up to an alert."""
        return {
            d.group for d in self.accepted_until(alert_position, channels) if d.group is not None
        }

    def following(self, alert_position: int, channels: Channels) -> list[str]:
        """Return the names of the channels that followed the stock up to an alert."""
        return sorted({d.channel for d in self.accepted_until(alert_position, channels)})

    def known_at(self, alert: str, alert_position: int) -> list[DatapointAdded]:
        """Return the datapoint events the ledger held at an alert: those appended before
        it, and its own (later alerts' datapoints are left out). A replayed shaper's
        datapoints come after every alert: theirs are those of this and earlier alerts."""
        if self.tag is not None:
            last = alert_position + 1
            return [
                e for e in self.datapoints
                if self.alerts.get(e.causation[0] if e.causation else "", last) <= alert_position
            ]  # fmt: skip
        return [
            e
            for e in self.datapoints
            if (e.position or 0) < alert_position or e.causation[:1] == (alert,)
        ]

    def carried_by(self, alert: str) -> list[DatapointAdded]:
        """Return the datapoint events an alert added (a datapoint it carried with a body
        the ledger already held added none)."""
        return [e for e in self.datapoints if e.causation[:1] == (alert,)]

    def by_event(self, event_ids: Collection[str]) -> list[DatapointAdded]:
        """Return the datapoint events among ``event_ids``, in log order."""
        return [e for e in self.datapoints if e.id in event_ids]


def as_datapoints(events: Sequence[DatapointAdded]) -> tuple[list[Datapoint], dict[str, str]]:
    """Return the datapoints of these events, one per id by the units' rule
    (``units.latest_bodies``), and for each datapoint id the event that gave its body."""
    points: list[Datapoint] = []
    source: dict[int, str] = {}
    for e in events:
        kind: Any = e.kind
        point = Datapoint(id=e.datapoint_id, stock=e.stream, kind=kind, body=e.body)
        points.append(point)
        source[id(point)] = e.id
    kept = latest_bodies(points)
    return kept, {p.id: source[id(p)] for p in kept}


def read_stocks(
    ledger: Ledger,
    stocks: Iterable[str],
    until: int,
    batch: int = 200,
    shaping: Shaping | None = None,
) -> Iterator[StockLog]:
    """Yield the log of each stock (in the order given) as the ledger held it at ``until``
    (with a shaping, the datapoints of its shapers), with the stock's alerts."""
    types: list[type[Event]] = [DatapointAdded, FilterDecided, AlertReceived]
    for stock, events in ledger.stream_events(stocks, types=types, batch=batch, until=until):
        yield StockLog.of(stock, events, shaping)
