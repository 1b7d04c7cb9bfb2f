"""Compare two variants: per T2 entry and stock, what one has that the other has not.

A side is a job's channels, combiner and T2 entries (:class:`Side`). For each stock a
channel of either side follows, each side's answer is the results its entries hold at
the stock's latest state that side made and follows: the same results T3 would see
(``projections.t2.plan`` gives their ids; nothing is computed here). Entries are matched
by name. A result only one side has is added or removed; one whose body differs is
changed, with the difference of each numeric value (nested values by dotted key), the
values of other keys (classes, flags), and how the stock's rank by each numeric value
moved among the stocks both sides scored. Channels are compared by the stocks they
accepted. Entries bound to single datapoints (a result per datapoint) are left out: they
do not change with the state.

A side that is a limited replay covers only what the replay went over (``Side.limits``:
a range of alert positions and some stocks; ``Side.covers``: some of the job's
channels). The diff compares what both sides cover: the channels both cover, the
decisions and states of alerts within both limits (the latest state within them), and
says so (``Diff.compared``). :func:`scoped_diff` is the diff as a caller of some
channels may see it (the HTTP API's).

The ledger is read once for the decisions and once per batch of stocks, so memory
grows with the number of stocks, not of events.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from skyledger.ledger import (
    AlertReceived,
    DatapointAdded,
    Event,
    FilterDecided,
    Ledger,
    ResultDerived,
    StateCombined,
)
from skyledger.ledger.errors import NotFound
from skyledger.projections.limits import Limits
from skyledger.projections.scope import Scope
from skyledger.projections.stocks import Channels, Shaping, StockLog, as_datapoints
from skyledger.projections.t2 import T2Entry, made_by, plan, state_at

__all__ = [
    "Change",
    "Diff",
    "Side",
    "check_seen",
    "compare",
    "diff",
    "flatten",
    "scoped_diff",
    "unknown_side",
]


@dataclass(frozen=True)
class Side:
    """One variant as the diff sees it: a label, its channels (by name: their keys),
    its combiner's identity and its T2 entries."""

    label: str
    channels: Mapping[str, Channels]
    combiner: Mapping[str, str]
    entries: Sequence[T2Entry]
    shaping: Shaping = field(default_factory=Shaping)  # whose datapoints its states hold
    limits: Limits = field(default_factory=Limits)  # the alerts and stocks it went over
    covers: frozenset[str] | None = None  # the channels it went over (None: all of them)
    notes: tuple[tuple[str, str], ...] = ()  # (a unit's role, what to note about it)

    @property
    def all_channels(self) -> Channels:
        """Return every channel of the side together."""
        return Channels(frozenset(k for c in self.channels.values() for k in c.keys))

    @property
    def limited(self) -> bool:
        """Return True for a side that went over only some alerts, stocks or channels."""
        return bool(self.limits) or self.covers is not None

    def only(self, names: Collection[str]) -> Side:
        """Return the side with only the channels named (and the notes on the others'
        filters left out)."""
        kept = tuple(
            (role, text)
            for role, text in self.notes
            if not role.startswith("filter:") or role.removeprefix("filter:") in names
        )
        channels = {name: c for name, c in self.channels.items() if name in names}
        return replace(self, channels=channels, notes=kept)


@dataclass
class Change:
    """One entry's result of one stock that differs between the sides."""

    entry: str
    stock: str
    kind: str  # added | removed | changed
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> a, b, delta

    def as_dict(self) -> dict[str, Any]:
        """Return the change as JSON-compatible data."""
        return {"entry": self.entry, "stock": self.stock, "kind": self.kind,
                "values": self.values}  # fmt: skip


@dataclass
class Diff:
    """What differs between two sides, with counts per entry and per channel."""

    a: str
    b: str
    stocks: int = 0
    entries: dict[str, dict[str, int]] = field(default_factory=dict)
    channels: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    compared: dict[str, Any] = field(default_factory=dict)  # within which limits (_compared)
    notes: list[str] = field(default_factory=list)  # units compared as recorded, not installed

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """Return the diff as JSON-compatible data, with at most ``limit`` changes of each
        entry (None: all; ``cut`` counts those left out, by entry)."""
        changes, cut = self.changes, {}
        if limit is not None:
            listed: Counter[str] = Counter()
            changes = []
            for change in self.changes:
                listed[change.entry] += 1
                if listed[change.entry] <= limit:
                    changes.append(change)
            cut = {entry: n - limit for entry, n in sorted(listed.items()) if n > limit}
        return {
            "a": self.a, "b": self.b, "stocks": self.stocks, "compared": self.compared,
            "entries": self.entries, "channels": self.channels,
            "changes": [c.as_dict() for c in changes], "cut": cut, "notes": self.notes,
        }  # fmt: skip

    @property
    def same(self) -> bool:
        """Return True if nothing differs."""
        moved = any(v["only_a"] or v["only_b"] for v in self.channels.values())
        return not self.changes and not moved


Bodies = dict[str, dict[str, dict[str, Any]]]
"""entry -> stock -> result body."""


def unknown_side(spec: str) -> NotFound:
    """Return the error for a side that does not exist or that the caller may not see
    (one answer for both)."""
    return NotFound(f"no variant or run {spec!r}")


def check_seen(scope: Scope, label: str, channels: Collection[str]) -> None:
    """Raise :func:`unknown_side` for a side none of whose channels the caller may see."""
    if scope.channels is not None and not set(channels) & scope.channels:
        raise unknown_side(label)


def scoped_diff(
    ledger: Ledger, a: Side, b: Side, scope: Scope, batch: int = 200, until: int | None = None
) -> Diff:
    """Return the diff as a caller may see it: only the channels of its scope take part,
    on either side, so only the stocks they follow appear and are counted. A side none of
    whose channels the caller may see is unknown to it (:func:`unknown_side`)."""
    if scope.channels is not None:
        for side in (a, b):
            check_seen(scope, side.label, side.channels)
        a, b = a.only(scope.channels), b.only(scope.channels)
    return diff(ledger, a, b, batch, until)


def diff(
    ledger: Ledger, a: Side, b: Side, batch: int = 200, until: int | None = None
) -> Diff:
    """Return what differs between two sides' results and channels (module doc), as the
    ledger stood at position ``until`` (None: now): decisions, states and results
    recorded later take no part."""
    for side in (a, b):
        if side.covers is not None:  # only the channels both cover take part
            a, b = a.only(side.covers), b.only(side.covers)
    sides = (a, b)
    limits = a.limits.meet(b.limits)
    accepted: tuple[dict[str, set[str]], ...] = (defaultdict(set), defaultdict(set))
    stocks: dict[str, None] = {}
    notes = [text for side in sides for _, text in side.notes]
    if limits is None:  # the sides' ranges of alerts do not meet: nothing to compare
        return Diff(a.label, b.label, compared=_compared(sides, limits, []), notes=notes)
    for event in ledger.read(stop=until, types=[FilterDecided]):
        if not isinstance(event, FilterDecided) or not event.accepted:
            continue
        if not limits.admits(event):
            continue
        for side, theirs in zip(sides, accepted, strict=True):
            for name, channels in side.channels.items():
                if channels.owns(event):
                    theirs[name].add(event.stream)
                    stocks.setdefault(event.stream)
    found = Diff(a.label, b.label, stocks=len(stocks), notes=notes,
                 compared=_compared(sides, limits, list(stocks)))  # fmt: skip
    for name in sorted(set(a.channels) | set(b.channels)):
        took_a, took_b = accepted[0][name], accepted[1][name]
        found.channels[name] = {
            "only_a": sorted(took_a - took_b),
            "only_b": sorted(took_b - took_a),
        }
    bodies: tuple[Bodies, Bodies] = (defaultdict(dict), defaultdict(dict))
    for index, stock, entry, body in _results(ledger, sides, limits, list(stocks), batch, until):
        bodies[index][entry][stock] = body
    for entry in sorted(set(bodies[0]) | set(bodies[1])):
        in_a, in_b = bodies[0].get(entry, {}), bodies[1].get(entry, {})
        changes = compare(entry, in_a, in_b)
        counts = Counter(c.kind for c in changes)
        found.entries[entry] = {
            "added": counts["added"], "removed": counts["removed"],
            "changed": counts["changed"], "same": len(set(in_a) & set(in_b)) - counts["changed"],
        }  # fmt: skip
        found.changes += changes
    return found


def _compared(sides: Sequence[Side], limits: Limits | None, stocks: list[str]) -> dict[str, Any]:
    """Return what a diff compared: within the limits of which sides (``limited_by``), the
    range of alert positions, the stocks (of the limits, those either side follows) and
    the channels (of the limits, those either side has); ``empty``: the ranges do not meet."""
    by = [side.label for side in sides if side.limited]
    covers = [side.covers for side in sides if side.covers is not None]
    channels = sorted({n for side in sides for n in side.channels}) if covers else None
    return {
        "limited_by": by, "empty": limits is None,
        "since": None if limits is None else limits.since,
        "until": None if limits is None else limits.until,
        "stocks": sorted(stocks) if limits is None or limits.stocks is not None else None,
        "channels": channels,
    }  # fmt: skip


def _results(
    ledger: Ledger,
    sides: Sequence[Side],
    limits: Limits,
    stocks: list[str],
    batch: int,
    until: int | None = None,
) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """Yield (side's index, stock, entry, body) of each result a side holds at each
    stock's latest state it made and follows within the limits (each stock's events read
    once for all)."""
    types: list[type[Event]] = [AlertReceived, DatapointAdded, FilterDecided, StateCombined]
    for start in range(0, len(stocks), batch):
        wanted: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # id -> its uses
        chunk = stocks[start : start + batch]
        for stock, events in ledger.stream_events(chunk, types, batch=batch, until=until):
            for index, side in enumerate(sides):
                for rid, entry in _owed(side, stock, events, limits):
                    wanted[ResultDerived.id_for(result_id=rid)].append((index, stock, entry))
        for event_id, event in ledger.get_many(wanted).items():
            later = until is not None and (event.position or 0) > until
            if isinstance(event, ResultDerived) and not later:
                for index, stock, entry in wanted[event_id]:
                    yield index, stock, entry, flatten(event.body)


def _owed(side: Side, stock: str, events: Sequence[Event], limits: Limits) -> list[tuple[str, str]]:
    """Return (result id, entry) of what a side's entries owe the stock's latest state
    within the limits that the side made and follows (entries bound to datapoints left
    out)."""
    channels = side.all_channels
    log = StockLog.of(stock, events, side.shaping)
    latest = None
    for e in events:
        if (
            isinstance(e, StateCombined)
            and limits.admits(e)
            and made_by(e, side.combiner, side.shaping)
            and log.follows(e.alert, state_at(e), channels)
        ):
            latest = e
    if latest is None:
        return []
    points, source = as_datapoints(log.by_event(set(latest.causation)))
    groups = log.groups(state_at(latest), channels)
    planned = plan(side.entries, latest, groups, points, source)
    return [(p.rid, p.entry.name) for p in planned if p.entry.unit.binds != "datapoint"]


def flatten(body: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return a result's values with nested objects spelt out: ``{"a": {"b": 1}}`` gives
    ``{"a.b": 1}`` (lists stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ranks(bodies: Mapping[str, dict[str, Any]], key: str) -> dict[str, int]:
    """Return each stock's rank (1: highest) by a numeric value of its result."""
    scored = [(v, s) for s, b in bodies.items() if (v := _number(b.get(key))) is not None]
    return {s: i for i, (_, s) in enumerate(sorted(scored, key=lambda t: (-t[0], t[1])), 1)}


def compare(
    entry: str, a: Mapping[str, dict[str, Any]], b: Mapping[str, dict[str, Any]]
) -> list[Change]:
    """Return the changes of one entry's results, stock by stock."""
    changes = [Change(entry, s, "removed") for s in sorted(set(a) - set(b))]
    changes += [Change(entry, s, "added") for s in sorted(set(b) - set(a))]
    both = sorted(set(a) & set(b))
    keys = sorted({k for s in both for k in (*a[s], *b[s])})
    ranks = {
        k: (_ranks({s: a[s] for s in both}, k), _ranks({s: b[s] for s in both}, k)) for k in keys
    }
    for stock in both:
        values: dict[str, dict[str, Any]] = {}
        for key in keys:
            va, vb = a[stock].get(key), b[stock].get(key)
            if va == vb:
                continue
            one: dict[str, Any] = {"a": va, "b": vb}
            na, nb = _number(va), _number(vb)
            if na is not None and nb is not None:
                one["delta"] = nb - na
                ra, rb = ranks[key][0].get(stock), ranks[key][1].get(stock)
                if ra != rb:
                    one["rank"] = [ra, rb]
            values[key] = one
        if values:
            changes.append(Change(entry, stock, "changed", values))
    return changes
