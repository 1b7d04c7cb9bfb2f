"""T3 react: select stocks, let a reactor decide its reactions, deliver each once.

Selection: stocks with new events since this reactor's tracked position (or all
stocks), followed by the selected channels, whose latest T2 results pass the cuts. The
reactor's ``react`` is pure; each reaction carries an idempotency key, and a key already
delivered (a ReactionIssued event with outcome "delivered" in the stream
``reaction:<key>``) is not delivered again unless ``redeliver`` is set. Each attempt is
recorded with its outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import (
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    ReactionIssued,
    ResultDerived,
    StateCombined,
)
from projections.t0 import provenance
from projections.t1 import accepted_by, followed_stocks, history_of
from projections.t2 import Retry
from units import LightCurve, Reaction, Reactor, StockSummary

__all__ = ["Cut", "React", "Selection"]


@dataclass(frozen=True)
class Cut:
    """Keep stocks whose latest ``unit`` result has ``key`` within [low, high]."""

    unit: str
    key: str
    low: float | None = None
    high: float | None = None

    def passes(self, results: Mapping[str, Mapping[str, Any]]) -> bool:
        """Return True if the results satisfy the cut."""
        value = results.get(self.unit, {}).get(self.key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class Selection:
    """Which stocks a reactor sees."""

    channels: frozenset[str] | None = None
    updated_since_last_run: bool = True
    cuts: tuple[Cut, ...] = field(default_factory=tuple)


def summarize(
    stock: str, events: Sequence[Event], channels: frozenset[str] | None = None
) -> StockSummary:
    """Return what a reactor sees of a stock: its light curve and latest results."""
    history = history_of(stock, events, channels)
    states = [e for e in events if isinstance(e, StateCombined)]
    latest_state = states[-1].state_id if states else None
    results: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if isinstance(event, ResultDerived) and event.subject in (latest_state, stock):
            results[event.provenance.unit] = event.body
    return StockSummary(
        stock=stock,
        channels=tuple(sorted(history.channels)),
        lightcurve=LightCurve.of(stock, history.datapoints),
        results=results,
    )


class React:
    """Runs one reactor over its selection; one projector per (job, reactor)."""

    def __init__(
        self,
        ledger: Ledger,
        reactor: Reactor,
        selection: Selection,
        name: str,
        run_id: str,
        retry: Retry | None = None,
        redeliver: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.reactor = reactor
        self.selection = selection
        self.name = name
        self.run_id = run_id
        self.retry = retry or Retry()
        self.redeliver = redeliver
        self.sleep = sleep

    def candidates(self, start: int, head: int) -> list[str]:
        """Return the stocks to consider, sorted."""
        if self.selection.updated_since_last_run:
            events: Iterable[Event] = self.ledger.read(start, head, types=[FilterDecided])
            updated = set(self.ledger.streams(start, head, types=[DatapointAdded, FilterDecided]))
        else:
            events = self.ledger.read(1, head, types=[FilterDecided])
            updated = set()
        channels = self.selection.channels
        followed = {e.stream for e in events if accepted_by(e, channels)}
        # A stock followed earlier and updated now is a candidate too.
        followed.update(followed_stocks(self.ledger, sorted(updated - followed), channels))
        return sorted(followed)

    def run(self) -> dict[str, int]:
        """Select, react and deliver; return counts by outcome."""
        start, head = self.ledger.tracked(self.name) + 1, self.ledger.head()
        summaries = []
        stocks = self.candidates(start, head) if start <= head else []
        for stock, stream in self.ledger.stream_events(stocks):
            summary = summarize(stock, stream, self.selection.channels)
            if all(cut.passes(summary.results) for cut in self.selection.cuts):
                summaries.append(summary)
        counts = {"selected": len(summaries), "delivered": 0, "skipped": 0, "failed": 0}
        events: list[Event] = []
        reactions = self.reactor.react(summaries) if summaries else []
        for reaction in reactions:
            outcome_events = self.deliver(reaction)
            events += outcome_events
            if not outcome_events:
                counts["skipped"] += 1  # delivered before: nothing to do, nothing recorded
            for event in outcome_events:
                counts[event.outcome] += 1
        self.ledger.append(events, tracking=(self.name, head))
        return counts

    def deliver(self, reaction: Reaction) -> list[ReactionIssued]:
        """Deliver one reaction (unless already delivered), retrying; return the records."""
        common = {
            "stream": f"reaction:{reaction.key}",
            "idempotency_key": reaction.key,
            "target": reaction.target,
            "payload": dict(reaction.payload),
            "stock": reaction.stock,
            "run_id": self.run_id,
        }
        earlier = list(self.ledger.stream(f"reaction:{reaction.key}"))
        if not self.redeliver and any(
            isinstance(e, ReactionIssued) and e.outcome == "delivered" for e in earlier
        ):
            return []
        records = []
        previous = len(earlier)
        for attempt in range(previous + 1, previous + self.retry.max_attempts + 1):
            started = time.perf_counter()
            try:
                detail = self.reactor.deliver(reaction)
            except Exception as exc:
                prov = provenance(self.reactor, time.perf_counter() - started)
                error = f"{type(exc).__name__}: {exc}"
                records.append(
                    ReactionIssued(
                        outcome="failed", detail=error, attempt=attempt, provenance=prov, **common
                    )
                )
                wait = self.retry.wait_after(attempt - previous)
                if wait is None:
                    break
                self.sleep(wait)
                continue
            prov = provenance(self.reactor, time.perf_counter() - started)
            records.append(
                ReactionIssued(
                    outcome="delivered", detail=detail, attempt=attempt, provenance=prov, **common
                )
            )
            break
        return records
