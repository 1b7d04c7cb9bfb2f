"""T1 combine: a state per alert that a channel of the job follows.

A projector consuming FilterDecided events. For every alert that one of the job's
channels accepted (by its filter or by autocomplete), the combiner gets the stock's
datapoints as the ledger knew them at that alert: those appended before it and its
own, never later ones (``projections.stocks.StockLog.known_at``), one body per datapoint
by the units' rule. Each state it returns is recorded with the alert it was made at, a
hash of the datapoint events it holds (so another body makes another state), and as
causation the alert, the job's decisions on it and those datapoint events. An alert is
combined once: in the batch holding the job's first acceptance of it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from skyledger.ledger import Event, FilterDecided, Ledger, StateCombined, bodies_id
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.identity import provenance, tracking_name, unit_identity
from skyledger.projections.pool import Portable, Workers, each_chunk
from skyledger.projections.projector import Projector
from skyledger.projections.stocks import Channels, Shaping, StockLog, as_datapoints, read_stocks
from skyledger.units import Combiner, alert_time

__all__ = ["Combine"]


class Combine(Portable, Projector):
    """Makes the job's states: one projector per (channels, combiner)."""

    topics = (FilterDecided,)
    stocks_per_chunk = 100  # stocks per task for the worker processes

    def __init__(
        self,
        ledger: Ledger,
        combiner: Combiner,
        channels: Channels,
        run_id: str,
        decide: str = "",
        workers: Workers | None = None,
        batch_size: int = 2000,
        shaping: Shaping | None = None,
        reshape: str = "",
    ) -> None:
        self.ledger = ledger
        self.combiner = combiner
        self.channels = channels
        self.run_id = run_id
        # The job's decisions are complete, and so are a replayed shaper's datapoints.
        self.upstream = tuple(n for n in (decide, reshape) if n)
        self.workers = workers
        self.batch_size = batch_size
        self.shaping = shaping or Shaping()  # whose datapoints the states hold
        parts: list[object] = [unit_identity(combiner)]
        if self.shaping:
            parts.append(self.shaping.as_json())
        self.name = tracking_name("t1", *parts, upstream=self.upstream)
        self.counts: Counter[str] = Counter()

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        """Return the states of the alerts first accepted by the job in this batch."""
        first: dict[str, int] = {}  # stock -> position of the batch's first event
        for e in events:
            if isinstance(e, FilterDecided) and e.accepted and self.channels.owns(e):
                first.setdefault(e.stream, e.position or 0)
        if not first:
            return []
        low, high = (events[0].position or 0) - 1, events[-1].position or 0  # the batch
        stocks = list(first)
        chunks = [
            (low, high, bound, stocks[i : i + self.stocks_per_chunk])
            for i in range(0, len(stocks), self.stocks_per_chunk)
        ]
        rows: list[StoredRow] = []
        for _, (made, counts) in each_chunk(self, "combine_stocks", chunks, self.workers,
                                            "workers: the job's combiner"):  # fmt: skip
            rows += made
            self.counts.update(counts)
        return rows

    def combine_stocks(
        self, chunk: tuple[int, int, int, Sequence[str]]
    ) -> tuple[list[StoredRow], Counter[str]]:
        """Return the states of some stocks' alerts whose first acceptance by the job
        lies in (``low``, ``high``] (reading the ledger up to ``bound``), and counts."""
        low, high, bound, stocks = chunk
        rows: list[StoredRow] = []
        counts: Counter[str] = Counter()
        for log in read_stocks(self.ledger, stocks, bound, shaping=self.shaping):
            for alert, position in self._alerts(log, low, high):
                counts["alerts"] += 1
                states = self.states(log, alert, position)
                counts["states"] += len(states)
                rows += [encode(state) for state in states]
        return rows, counts

    def _alerts(self, log: StockLog, low: int, high: int) -> list[tuple[str, int]]:
        """Return the alerts (id, position) whose first acceptance by the job lies in
        (``low``, ``high``], in log order."""
        seen: set[str] = set()
        found = []
        for d in log.decisions:
            if d.alert is None or d.alert in seen or not d.accepted:
                continue
            if not self.channels.owns(d):
                continue
            seen.add(d.alert)
            if low < (d.position or 0) <= high and d.alert_position is not None:
                found.append((d.alert, d.alert_position))
        return found

    def states(self, log: StockLog, alert: str, position: int) -> list[StateCombined]:
        """Return the StateCombined events the combiner makes at one alert."""
        points, source = as_datapoints(log.known_at(alert, position))
        own = {e.datapoint_id for e in log.carried_by(alert)}
        at = alert_time(log.alert_ids.get(alert), [p for p in points if p.id in own], points)
        started = time.perf_counter()
        states = self.combiner.combine(log.stock, points, at)
        prov = provenance(self.combiner, time.perf_counter() - started)
        decisions = tuple(d.id for d in log.decisions_on(alert, self.channels))
        made = []
        for state in states:
            events = sorted(source[i] for i in state.datapoint_ids)
            made.append(StateCombined(
                stream=log.stock, state_id=state.id, datapoint_ids=state.datapoint_ids,
                bodies=bodies_id(events), alert=alert, alert_position=position,
                provenance=prov, causation=(alert, *decisions, *events), run_id=self.run_id,
                shaper=log.tag, until=state.until, set_aside=dict(state.set_aside) or None,
            ))  # fmt: skip
        return made
