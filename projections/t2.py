"""T2 augment: every state of the job gets its T2 results, in dependency order.

A projector consuming StateCombined events. It takes the states its own combiner made
(unit, version, code and configuration) of alerts its own channels accepted: another
job's states, or states made for another job's channels, are not its work. Each job
entry (a T2 unit under a name, with its configuration) runs on the state, with the
datapoint bodies the state was made of, or on its stock or on each of its datapoints.

A result's id is the hash of (unit, version, code digest, configuration hash, inputs):
the state's id and bodies (or the stock and the state, or the datapoint's event) and the
ids of the results it depends on (:func:`plan`, shared with T3, which reads the same
results). A result already in the ledger is reused, whichever job or run made it. A unit
that raises is recorded as ResultFailed with its traceback and retried with backoff up
to the job's limit; units that depend on it fail with the reason.

The local run waits for a retry in place. A live worker must not (its consumer would
stall): with ``defer`` set, a failed attempt is recorded and the state is put off
(:class:`~projections.projector.Deferral`) until its retry is due; when the state comes
again, the attempts recorded in the ledger say which attempt is next and whether it is
due yet. Both record the same attempts, so their ledgers agree.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyledger.ledger import (
    Event,
    Ledger,
    ResultDerived,
    ResultFailed,
    StateCombined,
    canonical_bytes,
    result_id,
)
from skyledger.ledger.codec import StoredRow, encode
from skyledger.projections.identity import provenance, tracking_name, unit_identity
from skyledger.projections.pool import Portable, Workers, each_chunk
from skyledger.projections.projector import Deferral, Projector
from skyledger.projections.retry import Retry
from skyledger.projections.stocks import (
    Channels,
    Shaping,
    StockLog,
    alert_position,
    as_datapoints,
    read_stocks,
)
from skyledger.units import Datapoint, LightCurve, T2Unit, T2View

__all__ = [
    "FAILURES_KEPT",
    "Augment",
    "Planned",
    "T2Entry",
    "made_by",
    "plan",
    "state_at",
]

FAILURES_KEPT = 100
"""Failures a projector lists for its run's summary (all are events, and counted)."""


@dataclass(frozen=True)
class T2Entry:
    """A T2 unit of a job under its entry name, gated to channel groups (None: all).

    ``depends`` maps each dependency the unit declares to the entry that fills it
    (by default the entry of that name).
    """

    name: str
    unit: T2Unit
    groups: frozenset[int] | None = None
    depends: Mapping[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """Return what identifies the entry's work (for tracking names)."""
        return {
            "name": self.name,
            "unit": unit_identity(self.unit),
            "groups": None if self.groups is None else sorted(self.groups),
            "depends": dict(sorted(self.depends.items())),
        }

    def filled_by(self, dependency: str) -> str:
        """Return the entry name that fills one of the unit's dependencies."""
        return self.depends.get(dependency, dependency)


@dataclass(frozen=True)
class Planned:
    """One result an entry owes a state: its subject, inputs and id."""

    entry: T2Entry
    subject: str
    rid: str
    dependencies: tuple[tuple[str, str], ...]  # (dependency name, result id)
    datapoints: tuple[Datapoint, ...]


def made_by(
    state: StateCombined, combiner: Mapping[str, str], shaping: Shaping | None = None
) -> bool:
    """Return True if a combiner of this identity made the state, of the datapoints of
    the shaping's shapers (without one: of ingest's)."""
    tag = shaping.tag_of(state.stream) if shaping else None
    return state.shaper == tag and state.provenance.identity() == combiner


def state_at(state: StateCombined) -> int:
    """Return the position of the alert a state was made at (a state made before states
    named their alert: its own position)."""
    return alert_position(state) or 0


def plan(
    entries: Sequence[T2Entry],
    state: StateCombined,
    groups: set[int],
    datapoints: Sequence[Datapoint],
    source: Mapping[str, str],
) -> list[Planned]:
    """Return the results the entries owe a state, in dependency order.

    ``datapoints`` are the state's (one body each) and ``source`` the event that added
    each one's body; entries gated to groups the stock is in none of are left out.
    """
    planned: list[Planned] = []
    ids: dict[tuple[str, str], str] = {}  # (entry, subject) -> result id
    for entry in entries:
        if entry.groups is not None and not entry.groups & groups:
            continue
        unit = entry.unit
        for subject, inputs, points in _subjects(unit, state, datapoints, source):
            deps = tuple(
                (dep, ids.get((entry.filled_by(dep), subject), "")) for dep in unit.depends_on
            )
            rid = result_id(
                unit=unit.name, unit_version=unit.version, unit_digest=unit.digest(),
                config=unit.config_hash, inputs=[*inputs, *(r for _, r in deps if r)],
            )  # fmt: skip
            ids[(entry.name, subject)] = rid
            planned.append(Planned(entry, subject, rid, deps, points))
    return planned


def _subjects(
    unit: T2Unit,
    state: StateCombined,
    datapoints: Sequence[Datapoint],
    source: Mapping[str, str],
) -> list[tuple[str, list[str], tuple[Datapoint, ...]]]:
    """Return (subject, inputs, datapoints of the view) for each result a unit owes."""
    if unit.binds == "datapoint":
        return [(d.id, [source[d.id]], (d,)) for d in datapoints]
    body = [state.state_id, state.bodies]
    if unit.binds == "stock":
        return [(state.stream, [state.stream, *body], tuple(datapoints))]
    return [(state.state_id, body, tuple(datapoints))]


class Augment(Portable, Projector):
    """Runs the job's T2 entries on the job's states."""

    topics = (StateCombined,)
    stocks_per_chunk = 50  # stocks per task for the worker processes

    def __init__(
        self,
        ledger: Ledger,
        entries: Sequence[T2Entry],
        combiner: Mapping[str, str],
        channels: Channels,
        run_id: str,
        retry: Retry | None = None,
        decide: str = "",
        combine: str = "",
        workers: Workers | None = None,
        batch_size: int = 2000,
        sleep: Callable[[float], None] = time.sleep,
        defer: bool = False,
        clock: Callable[[], float] = time.time,
        shaping: Shaping | None = None,
    ) -> None:
        self.ledger = ledger
        self.shaping = shaping or Shaping()  # whose datapoints its states hold
        self.entries = list(entries)
        self.combiner = dict(combiner)
        self.channels = channels
        self.run_id = run_id
        self.retry = retry or Retry()
        # States are read as they come; the job's decisions on their alerts must be in.
        self.upstream = (decide,) if decide else ()
        self.workers = workers
        self.batch_size = batch_size
        self.sleep = sleep
        self.defer = defer  # put a state off until its retry is due, instead of sleeping
        self.clock = clock
        self._deferral: Deferral | None = None
        self.name = tracking_name(
            "t2", [e.identity() for e in self.entries], upstream=[n for n in (decide, combine) if n]
        )
        self.counts: Counter[tuple[str, str]] = Counter()  # (entry, outcome) -> count
        # (entry, stock, first error line) of the first FAILURES_KEPT failures: all are
        # ResultFailed events, and counted in ``counts``; a long-lived worker keeps no more
        self.failures: list[tuple[str, str, str]] = []

    def process(self, events: Sequence[Event], bound: int) -> list[StoredRow]:
        """Return the result events of the batch's states of this job."""
        self._deferral = None
        if not self.entries:
            return []
        by_stock: dict[str, list[StateCombined]] = defaultdict(list)
        for e in events:
            if isinstance(e, StateCombined) and made_by(e, self.combiner, self.shaping):
                by_stock[e.stream].append(e)
        stocks = list(by_stock)
        chunks = [
            (bound, [(s, by_stock[s]) for s in stocks[i : i + self.stocks_per_chunk]])
            for i in range(0, len(stocks), self.stocks_per_chunk)
        ]
        rows: list[StoredRow] = []
        for _, (made, counts, failures, deferrals) in each_chunk(
            self, "augment_stocks", chunks, self.workers, "workers: the job's T2 units"
        ):
            rows += made
            self.counts.update(counts)
            self.failures += failures[: max(0, FAILURES_KEPT - len(self.failures))]
            for d in deferrals:
                if self._deferral is None or d.position < self._deferral.position:
                    self._deferral = d
        return rows

    def deferral(self) -> Deferral | None:
        """Return the earliest state the last batch put off (``defer`` only)."""
        return self._deferral

    def augment_stocks(
        self, chunk: tuple[int, Sequence[tuple[str, Sequence[StateCombined]]]]
    ) -> tuple[
        list[StoredRow], Counter[tuple[str, str]], list[tuple[str, str, str]], list[Deferral]
    ]:
        """Return the encoded result events of some stocks' states, counts, failures and
        the states put off."""
        bound, stocks = chunk
        kept = self.counts, self.failures
        self.counts, self.failures = Counter(), []
        try:
            work: list[tuple[StateCombined, list[Planned]]] = []
            logs = read_stocks(self.ledger, [s for s, _ in stocks], bound, shaping=self.shaping)
            for log, (_, states) in zip(logs, stocks, strict=True):
                for state in states:
                    planned = self._plan(log, state)
                    if planned is not None:
                        work.append((state, planned))
            rids = [p.rid for _, ps in work for p in ps]
            wanted = [ResultDerived.id_for(result_id=r) for r in rids]
            if self.defer:  # and first attempts that failed, in the same read
                wanted += [ResultFailed.id_for(result_id=r, attempt=1) for r in rids]
            stored = self.ledger.get_many(wanted)
            bodies: dict[str, Mapping[str, Any] | None] = {
                e.result_id: e.body for e in stored.values() if isinstance(e, ResultDerived)
            }
            tried = self._tried([e for e in stored.values() if isinstance(e, ResultFailed)], bodies)
            rows: list[StoredRow] = []
            deferrals: list[Deferral] = []
            for state, planned in work:
                for p in planned:
                    made, wait = self._one(state, p, bodies, tried)
                    rows += [encode(e) for e in made]
                    if wait is not None:  # the state's other results wait with it
                        deferrals.append(Deferral(state.position or 0, wait))
                        break
            return rows, self.counts, self.failures, deferrals
        finally:
            self.counts, self.failures = kept

    def _tried(
        self, first: Sequence[ResultFailed], bodies: Mapping[str, Any]
    ) -> dict[str, ResultFailed]:
        """Return the last attempt recorded at each result whose first attempt failed
        and that has no body yet (``defer`` only: the local run tries every attempt in
        one go)."""
        found: dict[str, ResultFailed] = {}
        later = [e for e in first if e.result_id not in bodies]
        while later:
            for e in later:
                found[e.result_id] = e
            wanted = [
                ResultFailed.id_for(result_id=e.result_id, attempt=e.attempt + 1)
                for e in later
                if e.retry_after_s is not None
            ]
            stored = self.ledger.get_many(wanted) if wanted else {}
            later = [e for e in stored.values() if isinstance(e, ResultFailed)]
        return found

    def _plan(self, log: StockLog, state: StateCombined) -> list[Planned] | None:
        """Return the results owed to a state, or None if it is not this job's."""
        at = state_at(state)
        if not log.follows(state.alert, at, self.channels):
            return None  # made for another job's channels
        points, source = as_datapoints(log.by_event(set(state.causation)))
        return plan(self.entries, state, log.groups(at, self.channels), points, source)

    def _one(
        self,
        state: StateCombined,
        planned: Planned,
        bodies: dict[str, Mapping[str, Any] | None],
        tried: dict[str, ResultFailed],
    ) -> tuple[list[Event], float | None]:
        """Return the events of one planned result: none if reused, else the derivation
        or the failures (``bodies`` holds what is known, by result id, and ``tried`` the
        last failed attempt); and, with ``defer``, how long to wait if it was put off."""
        entry, unit, rid = planned.entry, planned.entry.unit, planned.rid
        if rid in bodies:  # in the ledger, or made (or given up) for an earlier state
            if bodies[rid] is not None:
                self.counts[(entry.name, "reused")] += 1
            return [], None
        first = 1
        last = tried.get(rid)
        if last is not None:  # ``defer``: attempts were recorded, this is a later one
            if last.retry_after_s is None:  # given up
                bodies[rid] = None
                return [], None
            due = last.time.timestamp() + last.retry_after_s - self.clock()
            if due > 0:
                return [], due
            first = last.attempt + 1
        common: dict[str, Any] = {"stream": state.stream, "subject": planned.subject,
                                  "run_id": self.run_id, "causation": (state.id,)}  # fmt: skip
        deps = {name: bodies.get(dep) for name, dep in planned.dependencies}
        missing = sorted(name for name, body in deps.items() if body is None)
        if missing:
            bodies[rid] = None
            self.counts[(entry.name, "dependency failed")] += 1
            error = f"dependencies without a result: {', '.join(missing)}"
            return [ResultFailed(result_id=rid, attempt=1, error=error, traceback="",
                                 provenance=provenance(unit), **common)], None  # fmt: skip
        points = planned.datapoints
        lightcurve = LightCurve.of(state.stream, points) if unit.binds == "lightcurve" else None
        view = T2View(state.stream, planned.subject, points, lightcurve,
                      {name: body for name, body in deps.items() if body is not None})  # fmt: skip
        events: list[Event] = []
        for attempt in range(first, self.retry.max_attempts + 1):
            started = time.perf_counter()
            try:
                body = dict(unit.process(view))
                canonical_bytes(body)  # must be JSON: refuse odd types early
            except Exception as exc:
                wait = self.retry.wait_after(attempt)
                error = f"{type(exc).__name__}: {exc}"
                failed = ResultFailed(
                    result_id=rid, attempt=attempt, error=error,
                    traceback=traceback.format_exc(), retry_after_s=wait,
                    provenance=provenance(unit, time.perf_counter() - started),
                    time=dt.datetime.fromtimestamp(self.clock(), dt.UTC), **common,
                )  # fmt: skip
                events.append(failed)
                self.counts[(entry.name, "failed attempts")] += 1
                if wait is None:
                    self.failures.append((entry.name, state.stream, error.splitlines()[0]))
                    break
                if self.defer:  # a later pass makes the next attempt, once it is due
                    tried[rid] = failed
                    return events, wait
                self.sleep(wait)
                continue
            bodies[rid] = body
            self.counts[(entry.name, "ok")] += 1
            used = planned.dependencies
            causes = (state.id, *(ResultDerived.id_for(result_id=d) for _, d in used))
            events.append(
                ResultDerived(
                    result_id=rid, body=body, inputs=tuple(d for _, d in planned.dependencies),
                    provenance=provenance(unit, time.perf_counter() - started),
                    **(common | {"causation": causes}),
                )
            )  # fmt: skip
            return events, None
        bodies[rid] = None
        self.counts[(entry.name, "failed")] += 1
        return events, None
