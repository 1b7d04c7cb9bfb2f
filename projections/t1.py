"""T1 combine: the datapoints of stocks that some channel follows become states.

The projector reads the log after its tracked position, finds the stocks that gained
datapoints or decisions, re-reads each such stock's stream, and appends the combiner's
states. Its new position is recorded in the same transaction as the last batch of states,
so a crash repeats at most work whose output is already stored (and skipped by id).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from ledger import DatapointAdded, Event, FilterDecided, Ledger, StateCombined
from ledger.codec import StoredRow, encode
from projections.t0 import provenance
from units import Combiner, Datapoint, latest_bodies

__all__ = ["Combine", "StockHistory", "accepted_by", "followed_stocks", "history_of"]


@dataclass(frozen=True)
class StockHistory:
    """A stock as the log tells it: latest datapoints, and which channels follow it."""

    stock: str
    datapoints: tuple[Datapoint, ...]
    datapoint_events: dict[str, str]  # datapoint id -> id of the event that added it last
    channels: dict[str, set[int | None]]  # channel -> groups it accepted the stock into


def accepted_by(event: Event, channels: Collection[str] | None) -> TypeGuard[FilterDecided]:
    """Return True for a decision of one of ``channels`` (None: any) accepting its stock."""
    return (
        isinstance(event, FilterDecided)
        and event.accepted
        and (channels is None or event.channel in channels)
    )


def followed_stocks(
    ledger: Ledger, stocks: Iterable[str], channels: Collection[str] | None
) -> list[str]:
    """Return those of ``stocks`` that one of ``channels`` accepted at least once, in
    order, from their decisions alone (200 stocks per query)."""
    return [
        stock
        for stock, events in ledger.stream_events(stocks, types=[FilterDecided])
        if any(accepted_by(e, channels) for e in events)
    ]


def history_of(
    stock: str, events: Iterable[Event], channels: Collection[str] | None = None
) -> StockHistory:
    """Return a stock's history from its events (in position order), seen by ``channels``
    (None: every channel; jobs sharing a ledger pass their own, so that one job's
    channels never make another job work on a stock).

    A datapoint received with several bodies (ZTF repeats each detection in later
    alerts' histories with fewer fields and rounded values; a survey may re-measure)
    keeps the body with the most fields, and of equals the one received last.
    """
    points: list[Datapoint] = []
    added_by: dict[int, str] = {}  # id() of each datapoint -> the event that added it
    following: dict[str, set[int | None]] = {}
    for event in events:
        if isinstance(event, DatapointAdded):
            kind: Any = event.kind
            point = Datapoint(id=event.datapoint_id, stock=stock, kind=kind, body=event.body)
            points.append(point)
            added_by[id(point)] = event.id
        elif accepted_by(event, channels):
            following.setdefault(event.channel, set()).add(event.group)
    kept = latest_bodies(points)  # the units' rule, so units and projector agree
    return StockHistory(stock, tuple(kept), {p.id: added_by[id(p)] for p in kept}, following)


class Combine:
    """Makes states for followed stocks; one projector per job (its own tracking name)."""

    def __init__(
        self,
        ledger: Ledger,
        combiner: Combiner,
        name: str,
        run_id: str,
        channels: Collection[str] | None = None,
        batch_size: int = 2000,
    ) -> None:
        self.ledger = ledger
        self.channels = channels
        self.combiner = combiner
        self.name = name
        self.run_id = run_id
        self.batch_size = batch_size

    def touched(self, start: int, stop: int) -> list[str]:
        """Return the stocks with datapoints or decisions between two positions, sorted."""
        return self.ledger.streams(start, stop, types=[DatapointAdded, FilterDecided])

    def followed(self, stocks: Iterable[str]) -> list[str]:
        """Return those of ``stocks`` that one of this projector's channels accepted, in
        order: only their datapoints are read (most stocks in a survey stream are not)."""
        return followed_stocks(self.ledger, stocks, self.channels)

    def run(
        self, progress: Callable[[int, int], None] | None = None, workers: int = 1
    ) -> dict[str, int]:
        """Combine every followed stock touched since the tracked position; return counts.

        With ``workers`` above 1, stocks are read and combined in that many worker
        processes; states are appended here, in stock order, as with one process.
        """
        start, head = self.ledger.tracked(self.name) + 1, self.ledger.head()
        stocks = self.followed(self.touched(start, head)) if start <= head else []
        chunks = [
            stocks[i : i + _STOCKS_PER_CHUNK] for i in range(0, len(stocks), _STOCKS_PER_CHUNK)
        ]
        counts = {"stocks": 0, "states": 0, "new_states": 0}
        from projections.pool import each_chunk  # here: pool imports t0

        done = each_chunk(
            self, "combine_stocks", chunks, workers,
            (self.combiner, self.name, self.run_id, self.channels), {},
            "workers: the job's combiner",
        )  # fmt: skip
        pending: list[StoredRow] = []
        n = 0
        for chunk, (followed, rows) in done:
            counts["stocks"] += followed
            pending += rows
            if len(pending) >= self.batch_size:
                self._write(pending, counts)
                pending = []
            n += len(chunk)
            if progress is not None:
                progress(n, len(stocks))
        self._write(pending, counts, tracking=(self.name, head))
        return counts

    def _write(
        self, rows: list[StoredRow], counts: dict[str, int], tracking: tuple[str, int] | None = None
    ) -> None:
        counts["new_states"] += self.ledger.append_rows(rows, tracking=tracking).appended
        counts["states"] += len(rows)

    def combine_stocks(self, stocks: Sequence[str]) -> tuple[int, list[StoredRow]]:
        """Return how many of ``stocks`` a channel follows, and their states encoded."""
        rows: list[StoredRow] = []
        followed = 0
        for stock, events in self.ledger.stream_events(
            stocks, types=[DatapointAdded, FilterDecided]
        ):
            history = history_of(stock, events, self.channels)
            if history.channels:
                followed += 1
                rows += [encode(state) for state in self.states(history)]
        return followed, rows

    def states(self, history: StockHistory) -> Sequence[StateCombined]:
        """Return the StateCombined events the combiner makes of one stock's history."""
        started = time.perf_counter()
        states = self.combiner.combine(history.stock, history.datapoints)
        prov = provenance(self.combiner, time.perf_counter() - started)
        channels = tuple(sorted(history.channels))
        return [
            StateCombined(
                stream=history.stock,
                state_id=state.id,
                datapoint_ids=state.datapoint_ids,
                channels=channels,
                provenance=prov,
                causation=tuple(sorted(history.datapoint_events[i] for i in state.datapoint_ids)),
                run_id=self.run_id,
            )
            for state in states
        ]


_STOCKS_PER_CHUNK = 100
