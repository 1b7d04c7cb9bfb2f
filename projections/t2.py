"""T2 augment: new states get their T2 results, in dependency order, each computed once.

A result's id is the hash of (unit, version, configuration hash, inputs): the subject (a
state, a stock or a datapoint) and the results it depends on. A result already in the
ledger is reused, not recomputed, whichever channel or run asks for it. A unit that
raises is recorded as ResultFailed with its traceback and retried with exponential
backoff up to the job's limit; units that depend on it fail with the reason.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import (
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    ResultDerived,
    ResultFailed,
    StateCombined,
    canonical_bytes,
    content_hash,
    result_id,
)
from ledger.codec import StoredRow, encode
from projections.t0 import provenance
from projections.t1 import StockHistory, history_of
from units import Datapoint, LightCurve, T2Unit, T2View

__all__ = ["Augment", "Retry", "T2Task"]

_STOCKS_PER_CHUNK = 50


@dataclass(frozen=True)
class T2Task:
    """A T2 unit of the job, and the channel groups it is limited to (None: all)."""

    unit: T2Unit
    groups: frozenset[int] | None = None


@dataclass(frozen=True)
class Retry:
    """Retry policy: ``max_attempts`` in all, waiting ``backoff_s * factor**(n-1)``."""

    max_attempts: int = 3
    backoff_s: float = 0.5
    factor: float = 2.0

    def wait_after(self, attempt: int) -> float | None:
        """Return the wait before the next attempt, or None when no attempt is left."""
        if attempt >= self.max_attempts:
            return None
        return self.backoff_s * self.factor ** (attempt - 1)


def derived_event_id(rid: str) -> str:
    """Return the id of the ResultDerived event that records result ``rid``."""
    return content_hash("event:ResultDerived", {"result_id": rid})


class Augment:
    """Runs the job's T2 units on states appended since the tracked position."""

    def __init__(
        self,
        ledger: Ledger,
        tasks: Sequence[T2Task],
        name: str,
        run_id: str,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        channels: Collection[str] | None = None,
    ) -> None:
        self.ledger = ledger
        self.channels = channels
        self.tasks = list(tasks)
        self.name = name
        self.run_id = run_id
        self.retry = retry or Retry()
        self.sleep = sleep
        self.counts: Counter[str] = Counter()

    def run(
        self, progress: Callable[[int, int], None] | None = None, workers: int = 1
    ) -> Counter[str]:
        """Process every state appended since the tracked position; return counts.

        With ``workers`` above 1, stocks are augmented in that many worker processes,
        each reading the ledger itself (``projections.pool``); results are appended
        here, in stock order, as with one process.
        """
        start, head = self.ledger.tracked(self.name) + 1, self.ledger.head()
        by_stock: dict[str, list[StateCombined]] = defaultdict(list)
        if start <= head and self.tasks:
            for event in self.ledger.read(start, head, types=[StateCombined]):
                if isinstance(event, StateCombined):
                    by_stock[event.stream].append(event)
        stocks = sorted(by_stock)
        chunks = [
            [(stock, by_stock[stock]) for stock in stocks[i : i + _STOCKS_PER_CHUNK]]
            for i in range(0, len(stocks), _STOCKS_PER_CHUNK)
        ]
        from projections.pool import each_chunk  # here: pool imports t0

        done = each_chunk(
            self, "augment_stocks", chunks, workers,
            (self.tasks, self.name, self.run_id, self.retry), {"channels": self.channels},
            "workers: the job's T2 units",
        )  # fmt: skip
        pending: list[StoredRow] = []
        n = 0
        for chunk, (rows, counts) in done:
            self.counts.update(counts)
            pending += rows
            if len(pending) >= 1000:
                self.ledger.append_rows(pending)
                pending = []
            n += len(chunk)
            if progress is not None:
                progress(n, len(stocks))
        self.ledger.append_rows(pending, tracking=(self.name, head))
        return self.counts

    def augment_stocks(
        self, chunk: Sequence[tuple[str, Sequence[StateCombined]]]
    ) -> tuple[list[StoredRow], Counter[str]]:
        """Return the encoded result events of some stocks' new states, and their counts."""
        kept, self.counts = self.counts, Counter()
        rows: list[StoredRow] = []
        try:
            stocks = [stock for stock, _ in chunk]
            read = self.ledger.stream_events(stocks, types=[DatapointAdded, FilterDecided])
            for (stock, stream), (_, states) in zip(read, chunk, strict=True):
                history = history_of(stock, stream, self.channels)
                if not history.channels:
                    continue  # no channel of this job follows the stock (another job's state)
                for state in states:
                    rows += [encode(event) for event in self.augment(history, state)]
            return rows, self.counts
        finally:
            self.counts = kept

    def augment(self, history: StockHistory, state: StateCombined) -> list[Event]:
        """Return the result events of every task for one state."""
        points = {d.id: d for d in history.datapoints}
        state_points = tuple(points[i] for i in state.datapoint_ids if i in points)
        groups = {g for gs in history.channels.values() for g in gs if g is not None}
        done: dict[tuple[str, str], tuple[str, Mapping[str, Any]] | None] = {}
        events: list[Event] = []
        for task in self.tasks:
            if task.groups is not None and not task.groups & groups:
                continue
            for subject, inputs, dps in self._subjects(task.unit, history, state, state_points):
                events += self._one(task.unit, history.stock, subject, inputs, dps, done, state)
        return events

    @staticmethod
    def _subjects(
        unit: T2Unit, history: StockHistory, state: StateCombined, dps: tuple[Datapoint, ...]
    ) -> list[tuple[str, list[str], tuple[Datapoint, ...]]]:
        if unit.binds == "datapoint":
            return [(d.id, [d.id], (d,)) for d in dps]
        if unit.binds == "stock":
            return [(history.stock, [history.stock, state.state_id], dps)]
        return [(state.state_id, [state.state_id], dps)]

    def _one(
        self,
        unit: T2Unit,
        stock: str,
        subject: str,
        inputs: list[str],
        dps: tuple[Datapoint, ...],
        done: dict[tuple[str, str], tuple[str, Mapping[str, Any]] | None],
        state: StateCombined,
    ) -> list[Event]:
        deps: dict[str, Mapping[str, Any]] = {}
        dep_ids: list[str] = []
        missing = []
        for name in unit.depends_on:
            found = done.get((name, subject))
            if found is None:
                missing.append(name)
            else:
                dep_ids.append(found[0])
                deps[name] = found[1]
        rid = result_id(
            unit=unit.name, unit_version=unit.version, config=unit.config_hash,
            inputs=[*inputs, *dep_ids],
        )  # fmt: skip
        prov = provenance(unit)
        common = {"stream": stock, "subject": subject, "run_id": self.run_id}
        if missing:
            done[(unit.name, subject)] = None
            self.counts[f"{unit.name} dependency failed"] += 1
            error = f"dependencies without a result: {', '.join(missing)}"
            fail = ResultFailed(
                result_id=rid, attempt=1, error=error, traceback="", provenance=prov, **common
            )
            return [fail]
        stored = self.ledger.get(derived_event_id(rid))
        if isinstance(stored, ResultDerived):
            done[(unit.name, subject)] = (rid, stored.body)
            self.counts[f"{unit.name} reused"] += 1
            return []
        lightcurve = LightCurve.of(stock, dps) if unit.binds == "lightcurve" else None
        view = T2View(stock, subject, dps, lightcurve, deps)
        events: list[Event] = []
        for attempt in range(1, self.retry.max_attempts + 1):
            started = time.perf_counter()
            try:
                body = dict(unit.process(view))
                canonical_bytes(body)  # must be JSON: refuse NaN-free but odd types early
            except Exception as exc:
                wait = self.retry.wait_after(attempt)
                events.append(
                    ResultFailed(
                        result_id=rid, attempt=attempt, error=f"{type(exc).__name__}: {exc}",
                        traceback=traceback.format_exc(), retry_after_s=wait,
                        provenance=provenance(unit, time.perf_counter() - started), **common,
                    )
                )  # fmt: skip
                self.counts[f"{unit.name} failed attempts"] += 1
                if wait is None:
                    break
                self.sleep(wait)
                continue
            done[(unit.name, subject)] = (rid, body)
            self.counts[f"{unit.name} ok"] += 1
            events.append(
                ResultDerived(
                    result_id=rid, body=body, inputs=tuple(dep_ids),
                    provenance=provenance(unit, time.perf_counter() - started),
                    causation=(state.id,), **common,
                )
            )  # fmt: skip
            return events
        done[(unit.name, subject)] = None
        self.counts[f"{unit.name} failed"] += 1
        return events
