"""T0's decisions: each channel's filter decides on every alert the ledger receives.

A projector consuming AlertReceived events: for every readable alert, in log order, each
channel of the job gets a FilterDecided event (accepted, into a group, or rejected with
a code and the reason). A channel with ``autocomplete`` accepts any alert of a stock it
accepted at an earlier alert, whatever its filter says. The filters' verdicts come from
ingest when it read the packet in this run (``projections.t0.Verdicts``); otherwise the
packet's stored bytes are decoded again (a new job over an old ledger), in worker
processes if there are any. All the job's decisions on an alert are appended together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from skyledger.ledger import AlertReceived, Event, FilterDecided, Ledger, ProjectionError
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.identity import ACCEPT_ALL, provenance, tracking_name
from skyledger.projections.pool import Workers, each_chunk
from skyledger.projections.projector import Projector
from skyledger.projections.stocks import ChannelKey, Channels
from skyledger.projections.t0 import Verdict, Verdicts, judge, stored_schema
from skyledger.units import Alert, Filter
from skyledger.units.sources import iter_blob

__all__ = ["Channel", "Decide", "DecideStats"]

_PACKETS_PER_CHUNK = 50


@dataclass(frozen=True)
class Channel:
    """A channel as T0 sees it: a name, a filter (None accepts all), autocomplete."""

    name: str
    filter: Filter | None = None
    autocomplete: bool = False

    @cached_property
    def key(self) -> ChannelKey:
        """Return the channel's key (what makes its decisions its own)."""
        unit = self.filter
        return ChannelKey.of(
            self.name, ACCEPT_ALL if unit is None else provenance(unit), self.autocomplete
        )


@dataclass
class DecideStats:
    """Decisions made, by channel: accepted, and rejected by code (with a reason)."""

    accepted: Counter[str]
    rejected: Counter[tuple[str, int | None]]
    reasons: dict[tuple[str, int | None], str]


@dataclass
class _Judge:
    """Decodes stored packets and runs the filters on them (in a worker, or here)."""

    filters: Sequence[Filter | None]

    def verdicts(
        self, chunk: Sequence[tuple[str, str, bytes, str | None]]
    ) -> list[tuple[str, tuple[Verdict | None, ...] | None]]:
        """Return each packet's verdicts by digest (None if it no longer decodes)."""
        found: list[tuple[str, tuple[Verdict | None, ...] | None]] = []
        for digest, locator, data, schema in chunk:
            decoded = iter_blob(data, locator, schema)
            alert = next((a for a in decoded if isinstance(a, Alert)), None)
            found.append((digest, None if alert is None else judge(self.filters, alert)))
        return found


class Decide(Projector):
    """Records every channel's decision on every alert, in log order."""

    topics = (AlertReceived,)

    def __init__(
        self,
        ledger: Ledger,
        channels: Sequence[Channel],
        run_id: str,
        verdicts: Verdicts | None = None,
        workers: Workers | None = None,
        batch_size: int = 2000,
    ) -> None:
        self.ledger = ledger
        self.channels = list(channels)
        self.mine = Channels(frozenset(c.key for c in self.channels))
        self.run_id = run_id
        self.verdicts = verdicts if verdicts is not None else {}
        self.workers = workers
        self.batch_size = batch_size
        self.name = tracking_name("t0-decide", sorted(c.key.as_json() for c in self.channels))
        self.stats = DecideStats(Counter(), Counter(), {})

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        """Return the decisions of every channel on each readable alert of the batch."""
        alerts = [e for e in events if isinstance(e, AlertReceived) and e.error is None]
        if not alerts:
            return []
        verdicts = self._verdicts(alerts)
        followed = self._followed(alerts, bound)
        rows: list[StoredRow] = []
        for alert in alerts:
            for channel, verdict in zip(self.channels, verdicts[alert.digest], strict=True):
                decision = self._decide(channel, verdict, alert, followed)
                rows.append(encode(decision))
        return rows

    def _verdicts(self, alerts: Sequence[AlertReceived]) -> dict[str, tuple[Verdict | None, ...]]:
        """Return the filters' verdicts on each alert: handed over by ingest, or judged
        from the packet's stored bytes."""
        found: dict[str, tuple[Verdict | None, ...]] = {}
        missing: list[tuple[str, str, bytes, str | None]] = []
        for alert in alerts:
            given = self.verdicts.pop(alert.digest, None)
            if given is not None:
                found[alert.digest] = given
            elif all(c.filter is None for c in self.channels):
                found[alert.digest] = (None,) * len(self.channels)
            elif alert.digest not in found:
                data = self.ledger.packet(alert.digest)
                if data is None:
                    msg = (
                        f"cannot decide on alert {alert.alert_id} ({alert.locator}): its packet "
                        f"{alert.digest} is not kept (the ledger's packets setting is 'digest'), "
                        "and this run did not read it"
                    )
                    raise ProjectionError(msg)
                missing.append(
                    (alert.digest, alert.locator, data, stored_schema(self.ledger, alert))
                )
        chunks = [
            missing[i : i + _PACKETS_PER_CHUNK] for i in range(0, len(missing), _PACKETS_PER_CHUNK)
        ]
        judge_ = _Judge([c.filter for c in self.channels])
        for _, judged in each_chunk(judge_, "verdicts", chunks, self.workers,
                                    "workers: the job's filters"):  # fmt: skip
            for digest, verdict in judged:
                if verdict is None:
                    msg = f"the stored packet {digest} no longer decodes into an alert"
                    raise ProjectionError(msg)
                found[digest] = verdict
        return found

    def _followed(
        self, alerts: Sequence[AlertReceived], bound: int
    ) -> dict[ChannelKey, dict[str, int]]:
        """Return, per autocomplete channel, the stocks of these alerts it accepted at
        an earlier alert, with the earliest such alert's position."""
        keys = [c.key for c in self.channels if c.autocomplete]
        followed: dict[ChannelKey, dict[str, int]] = {key: {} for key in keys}
        if not keys:
            return followed
        stocks = list(dict.fromkeys(a.stream for a in alerts))
        for _, decisions in self.ledger.stream_events(stocks, [FilterDecided], until=bound):
            for d in decisions:
                key = ChannelKey.of_decision(d) if isinstance(d, FilterDecided) else None
                if key in followed and isinstance(d, FilterDecided) and d.accepted:
                    at = d.alert_position if d.alert_position is not None else d.position or 0
                    known = followed[key].get(d.stream)
                    followed[key][d.stream] = at if known is None else min(known, at)
        return followed

    def _decide(
        self,
        channel: Channel,
        verdict: Verdict | None,
        alert: AlertReceived,
        followed: dict[ChannelKey, dict[str, int]],
    ) -> FilterDecided:
        accepted, code, group, reason = True, None, None, ""
        if verdict is not None:
            accepted, code, group = verdict.accepted, verdict.code, verdict.group
            reason = verdict.reason
        position = alert.position or 0
        stocks = followed.get(channel.key)
        if not accepted and stocks is not None and stocks.get(alert.stream, position) < position:
            accepted, code, reason = True, None, f"autocomplete (filter said {code}: {reason})"
        if accepted and stocks is not None:
            stocks.setdefault(alert.stream, position)
        if accepted:
            self.stats.accepted[channel.name] += 1
        else:
            self.stats.rejected[(channel.name, code)] += 1
            self.stats.reasons.setdefault((channel.name, code), reason)
        unit = channel.filter
        prov = provenance(unit, verdict.duration_s) if unit and verdict else ACCEPT_ALL
        return FilterDecided(
            stream=alert.stream, channel=channel.name, alert_digest=alert.digest,
            alert=alert.id, alert_position=position, autocomplete=channel.autocomplete,
            accepted=accepted, code=code, group=group, reason=reason, provenance=prov,
            causation=(alert.id,), run_id=self.run_id,
        )  # fmt: skip
