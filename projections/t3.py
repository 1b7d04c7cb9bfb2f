"""T3 react: the job's states, with their results, become reactions the job intends.

A projector consuming StateCombined events, never passing T2 (so every result a state
is owed is in the ledger). It takes the states of the job's own combiner made at alerts
the selected channels accepted; a stock's summary at a state holds that state's light
curve and, for each of the job's T2 entries (by entry name), the result the entry owes
that state, computed by the same rule as T2 (``projections.t2.plan``): results of other
configurations or other jobs are never mixed in. Stocks whose results fail a cut are
left out.

A reactor of scope ``"state"`` is given each summary as it comes, so what it intends is
a function of the log; one of scope ``"selection"`` (a report) is given, once per pass,
the latest summary of each stock seen in the pass (``whole_pass``: its intents and its
position are recorded together at the end). Intents (``ReactionIntended``: key, target,
payload, and as causation the states and results they were made from) are recorded
with the position; delivery is the outbox's (``projections.outbox``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skyledger.ledger import (
    Event,
    FilterDecided,
    Ledger,
    ReactionIntended,
    ResultDerived,
    StateCombined,
)
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.identity import provenance, tracking_name, unit_identity
from skyledger.projections.projector import Projector
from skyledger.projections.stocks import Channels, Shaping, StockLog, as_datapoints, read_stocks
from skyledger.projections.t2 import T2Entry, made_by, plan, state_at
from skyledger.units import Datapoint, LightCurve, Reaction, Reactor, StockSummary

__all__ = ["SELECTION_CHUNK", "Cut", "React", "Selection"]

SELECTION_CHUNK = 500
"""Stocks whose summaries a selection reactor's pass makes at a time (:meth:`React.finish`)."""


@dataclass(frozen=True)
class Cut:
    """Keep stocks whose ``entry`` result has ``key`` within [low, high]."""

    entry: str
    key: str
    low: float | None = None
    high: float | None = None

    def passes(self, results: Mapping[str, Mapping[str, Any]]) -> bool:
        """Return True if the results satisfy the cut."""
        value = results.get(self.entry, {}).get(self.key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class Selection:
    """Which stocks a reactor sees: followed by ``channels`` (None: any of the job's),
    passing ``cuts``; ``every_stock``: a selection reactor sees every followed stock at
    each pass, not only those updated since the last."""

    channels: frozenset[str] | None = None
    cuts: tuple[Cut, ...] = ()
    every_stock: bool = False


@dataclass(frozen=True)
class _Seen:
    """A summary and the ids of the events it was made from (state, results)."""

    summary: StockSummary
    causes: tuple[str, ...]


class React(Projector):
    """Runs one reactor of a job over the job's states: one projector per reactor entry."""

    topics = (StateCombined,)

    def __init__(
        self,
        ledger: Ledger,
        reactor: Reactor,
        entries: Sequence[T2Entry],
        combiner: Mapping[str, str],
        channels: Channels,
        selection: Selection,
        run_id: str,
        decide: str = "",
        combine: str = "",
        augment: str = "",
        batch_size: int = 2000,
        shaping: Shaping | None = None,
    ) -> None:
        self.ledger = ledger
        self.shaping = shaping or Shaping()  # whose datapoints the job's states hold
        self.reactor = reactor
        self.entries = [e for e in entries if e.unit.binds != "datapoint"]
        self.combiner = dict(combiner)
        self.channels = channels  # the job's: they gate the T2 entries, as in T2
        self.selected = channels.only(selection.channels)
        self.selection = selection
        self.run_id = run_id
        # Every result a state is owed is in once T2 has passed the state.
        self.upstream = tuple(n for n in (decide, augment) if n)
        self.batch_size = batch_size
        self.whole_pass = reactor.scope == "selection"
        self.name = tracking_name(
            "t3", unit_identity(reactor), self.selected.names,
            [[c.entry, c.key, c.low, c.high] for c in selection.cuts], selection.every_stock,
            upstream=[n for n in (decide, combine, augment) if n],
        )  # fmt: skip
        self.latest: dict[str, str] = {}  # stock -> id of its latest state seen this pass
        self.counts: Counter[str] = Counter()

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        """Return the intents of a state reactor for the batch's states (a selection
        reactor notes each stock's latest state, for :meth:`finish`)."""
        states = [
            e for e in events
            if isinstance(e, StateCombined) and made_by(e, self.combiner, self.shaping)
        ]  # fmt: skip
        if self.whole_pass:  # note the latest followed state: the decisions suffice
            stocks = list(dict.fromkeys(s.stream for s in states))
            logs = {
                stock: StockLog.of(stock, events)
                for stock, events in self.ledger.stream_events(stocks, [FilterDecided], until=bound)
            }
            for state in states:
                if logs[state.stream].follows(state.alert, state_at(state), self.selected):
                    self.latest[state.stream] = state.id
            return []
        rows: list[StoredRow] = []
        for seen in self._summaries(states, bound):
            reactions = self.reactor.react([seen.summary])
            rows += self._intents(reactions, {seen.summary.stock: seen.causes})
        return rows

    def finish(self, bound: int) -> list[StoredRow]:
        """Return a selection reactor's intents for the pass: the latest summary of each
        stock seen (every followed stock with ``every_stock``), handed to the reactor as
        they are made, a chunk of stocks at a time, in stock order: however many stocks
        the pass saw, only a chunk's summaries (and what the reactor keeps) are held."""
        ids = dict(self.latest)
        self.latest.clear()
        if self.selection.every_stock:
            for stock, state_id in self._every_stock(bound).items():
                ids.setdefault(stock, state_id)
        ordered = [ids[stock] for stock in sorted(ids)]
        causes: dict[str, tuple[str, ...]] = {}  # stock -> its state's and results' ids

        def selection() -> Iterator[StockSummary]:
            for start in range(0, len(ordered), SELECTION_CHUNK):
                found = self.ledger.get_many(ordered[start : start + SELECTION_CHUNK])
                states = [s for s in found.values() if isinstance(s, StateCombined)]
                for seen in self._summaries(sorted(states, key=lambda s: s.stream), bound):
                    causes[seen.summary.stock] = seen.causes
                    yield seen.summary

        summaries = selection()
        first = next(summaries, None)
        if first is None:
            return []
        return self._intents(self.reactor.react(itertools.chain([first], summaries)), causes)

    def _every_stock(self, bound: int) -> dict[str, str]:
        """Return the latest state of the job's combiner of every stock a selected
        channel has accepted, by stock."""
        stocks = sorted(
            {e.stream for e in self.ledger.read(1, bound, [FilterDecided]) if self.selected.owns(e)}
        )
        latest: dict[str, str] = {}
        for stock, events in self.ledger.stream_events(stocks, [StateCombined], until=bound):
            for e in events:
                if isinstance(e, StateCombined) and made_by(e, self.combiner, self.shaping):
                    latest[stock] = e.id
        return latest

    def _summaries(self, states: Sequence[StateCombined], bound: int) -> Iterable[_Seen]:
        """Yield the summary of each state a selected channel followed and the cuts pass."""
        stocks = list(dict.fromkeys(s.stream for s in states))
        logs = {
            log.stock: log for log in read_stocks(self.ledger, stocks, bound, shaping=self.shaping)
        }
        chosen: list[tuple[StateCombined, StockLog, list[Datapoint], dict[str, str]]] = []
        for state in states:
            log = logs[state.stream]
            at = state_at(state)
            if not log.follows(state.alert, at, self.selected):
                continue
            points, source = as_datapoints(log.by_event(set(state.causation)))
            owed = plan(self.entries, state, log.groups(at, self.channels), points, source)
            chosen.append((state, log, points, {p.entry.name: p.rid for p in owed}))
        wanted = [ResultDerived.id_for(result_id=r) for *_, rids in chosen for r in rids.values()]
        stored = self.ledger.get_many(wanted)
        results = {e.result_id: e for e in stored.values() if isinstance(e, ResultDerived)}
        for state, log, points, rids in chosen:
            got = {name: results[rid] for name, rid in rids.items() if rid in results}
            bodies = {name: r.body for name, r in got.items()}
            self.counts["seen"] += 1
            if not all(cut.passes(bodies) for cut in self.selection.cuts):
                continue
            self.counts["selected"] += 1
            summary = StockSummary(
                stock=state.stream,
                channels=tuple(log.following(state_at(state), self.selected)),
                lightcurve=LightCurve.of(state.stream, points),
                results=bodies,
                state=state.state_id,
            )
            yield _Seen(summary, (state.id, *(r.id for r in got.values())))

    def _intents(
        self, reactions: Sequence[Reaction], by_stock: Mapping[str, tuple[str, ...]]
    ) -> list[StoredRow]:
        """Return the intents of these reactions, each naming the states and results of
        the stocks it is about (all of those it was given if it names none)."""
        rows = []
        for reaction in reactions:
            about = reaction.about or ((reaction.stock,) if reaction.stock else tuple(by_stock))
            causes = tuple(c for stock in about for c in by_stock.get(stock, ()))
            intent = ReactionIntended(
                stream=f"reaction:{reaction.key}", idempotency_key=reaction.key,
                target=reaction.target, payload=dict(reaction.payload), stock=reaction.stock,
                intended_by=self.name, provenance=provenance(self.reactor), causation=causes,
                run_id=self.run_id, channels=tuple(self.selected.names),
            )  # fmt: skip
            self.counts["intended"] += 1
            rows.append(encode(intent))
        return rows
