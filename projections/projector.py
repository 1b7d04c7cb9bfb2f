"""The one shape of every tier: a projector, and the driver that catches it up.

A :class:`Projector` has a tracking name, the event types it consumes, the names of the
projectors it must never pass (``upstream``) and a handler, :meth:`Projector.process`,
that turns a run of new ledger events into what it records. A :class:`View` stores that
output and the projector's new position in one transaction: :class:`LedgerView` appends
events to the ledger (the tiers); the read model is a view of its own (SQL tables).

:func:`catch_up` drives a projector from its position to the head of the ledger (or to
its slowest upstream projector) in batches: read up to ``batch_size`` events of its
types, process them, record the output with the move of the position. A crash between
batches loses nothing and repeats nothing that was recorded; two processes driving one
name are detected by the view (``TrackingConflict``). A projector with ``whole_pass``
set (a report over everything new) records once, at the end of the pass, so what it
saw and its position are never apart. A projector may put work off (:meth:`Projector.
deferral`: a T2 unit to retry later): what it made is recorded, its position stops just
before the event it put off, and the catch-up says how long to wait (the live workers
hand the notification back with that delay instead of sleeping).

What eventsourcing's ``Projection`` and ``ProjectionRunner`` teach, and what this takes:
a name, topics, a view that stores the position with the update, and a position that
only moves forward. What it does not take: one transaction per event (batches are 15x
faster here), a thread per runner, and the application/aggregate machinery (our events
are bare, content-addressed facts). See docs/architecture.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from skyledger.ledger import Event, Ledger, ProjectionError, Shard, Tracking, shard_of
from skyledger.ledger.codec import StoredRow

__all__ = [
    "CatchUp",
    "Deferral",
    "LedgerView",
    "Projector",
    "Topics",
    "View",
    "bound_of",
    "catch_up",
    "catch_up_shards",
    "catch_up_waiting",
    "tracking_of",
]

Progress = Callable[[int, int], None]  # (position reached, position to reach)


@dataclass(frozen=True)
class Deferral:
    """Work a projector put off: the position of the first event it could not finish
    yet, and how long to wait before trying it again."""

    position: int
    wait_s: float


class Projector(ABC):
    """A tier: consumes some event types of the ledger, records what it makes of them."""

    name: str = ""
    """Tracking name: the hash of the projector's units and its upstream names."""
    topics: tuple[type[Event], ...] = ()
    """Event types it consumes (empty: every event)."""
    upstream: tuple[str, ...] = ()
    """Tracking names of the projectors it must never pass."""
    batch_size: int = 2000
    """Events handed to :meth:`process` at most at a time."""
    whole_pass: bool = False
    """Record once per pass (:meth:`finish`), not once per batch."""

    @abstractmethod
    def process(self, events: Sequence[Event], bound: int) -> Sequence[Any]:
        """Return what to record for these events (new ledger events, encoded), in log
        order. ``bound`` is the position up to which the ledger may be read: every
        upstream projector has passed it, so reads up to it are complete."""

    def finish(self, bound: int) -> Sequence[Any]:
        """Return what a whole-pass projector records at the end of a pass."""
        return ()

    def deferral(self) -> Deferral | None:
        """Return the work the last :meth:`process` put off, if any (its output is
        recorded, its position stops before the deferral's event)."""
        return None


class View(Protocol):
    """Where a projector's output and its position are recorded, together."""

    def position(self, name: str) -> int:
        """Return the position recorded under ``name`` (0 if none)."""

    def record(self, output: Sequence[Any], tracking: Tracking | None) -> int:
        """Store the output and move the position in one transaction; return how many
        new records were stored. Raise ``TrackingConflict`` if the position was not
        ``tracking.after``. Without ``tracking`` the position stays (work put off)."""


class LedgerView:
    """The ledger as a view: a tier's output events are appended with its position."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def position(self, name: str) -> int:
        """Return the ledger's tracking position for ``name``."""
        return self.ledger.tracked(name)

    def record(self, output: Sequence[StoredRow], tracking: Tracking | None) -> int:
        """Append the encoded events and move the position (if given) in one transaction."""
        return self.ledger.append_rows(output, tracking=tracking).appended


@dataclass
class CatchUp:
    """What a catch-up did: the positions it went from and to, events read, records
    made, and how long to wait before going on if the projector put work off."""

    start: int
    end: int
    read: int = 0
    produced: int = 0
    stored: int = 0
    deferred_s: float | None = None


def tracking_of(projector: Projector, shard: Shard | None = None) -> str:
    """Return the name a projector's position is recorded under (in a shard, if given)."""
    return projector.name if shard is None else shard.name_of(projector.name)


def _upstream(
    projector: Projector, shard: Shard | None, shards: int
) -> list[tuple[str, str, Shard | None]]:
    """Return (tracking name, projector name, shard) of each upstream position."""
    if shard is not None:
        return [(shard.name_of(name), name, shard) for name in projector.upstream]
    if shards > 1:
        return [
            (s.name_of(name), name, s) for name in projector.upstream for s in Shard.all(shards)
        ]
    return [(name, name, None) for name in projector.upstream]


Topics = Mapping[str, tuple[type[Event], ...]]
"""The event types each projector consumes, by name (for :func:`bound_of`)."""


def bound_of(
    ledger: Ledger,
    projector: Projector,
    stop: int | None = None,
    shard: Shard | None = None,
    shards: int = 1,
    topics: Topics | None = None,
) -> int:
    """Return how far a projector may go: the head, its slowest upstream, ``stop``.

    With ``topics`` (what each upstream projector consumes), an upstream whose position
    is behind the head but that has nothing of its own to read before the head counts
    as at the head: it owes nothing up to there (the live workers drive upstream tiers
    only when something for them arrives, not after every downstream event)."""
    head = ledger.head()
    bound = head
    for name, base, where in _upstream(projector, shard, shards):
        at = ledger.tracked(name)
        idle = at < bound and topics is not None and base in topics
        if (
            idle
            and topics is not None
            and not ledger.read_batch(at + 1, head, topics[base], 1, where)
        ):
            at = head  # read after the head: what came later is not counted
        bound = min(bound, at)
    return bound if stop is None else min(bound, stop)


def catch_up(
    ledger: Ledger,
    projector: Projector,
    view: View | None = None,
    *,
    stop: int | None = None,
    progress: Progress | None = None,
    shard: Shard | None = None,
    shards: int = 1,
    topics: Topics | None = None,
) -> CatchUp:
    """Drive a projector from its recorded position to its bound (see module doc); with
    ``shard``, only over that shard's streams, with a position of its own there."""
    if shard is not None and projector.whole_pass:
        raise ProjectionError(f"{projector.name}: a whole-pass projector cannot be sharded")
    view = view or LedgerView(ledger)
    name = tracking_of(projector, shard)
    start = after = view.position(name)
    bound = bound_of(ledger, projector, stop, shard, shards, topics)
    done = CatchUp(start, start)
    if after >= bound:
        return done
    pass_start = after
    while after < bound:
        events = ledger.read_batch(after + 1, bound, projector.topics, projector.batch_size, shard)
        full = len(events) >= projector.batch_size
        end = (events[-1].position or bound) if full else bound
        output = projector.process(events, bound)
        deferral = projector.deferral()
        if deferral is not None:  # stop before the event put off; say when to go on
            end = max(after, min(end, deferral.position - 1))
            done.deferred_s = deferral.wait_s
        done.read += len(events)
        if projector.whole_pass:
            if output or deferral is not None:
                msg = f"{projector.name}: a whole-pass projector records only in finish()"
                raise ProjectionError(msg)
        else:
            done.produced += len(output)
            moved = Tracking(name, after, end) if end > after else None
            done.stored += view.record(output, moved)
        after = end
        if progress is not None:
            progress(after, bound)
        if deferral is not None:
            break
    if projector.whole_pass:
        output = projector.finish(bound)
        done.produced += len(output)
        done.stored += view.record(output, Tracking(name, pass_start, bound))
    done.end = after
    return done


def catch_up_waiting(
    ledger: Ledger,
    projector: Projector,
    sleep: Callable[[float], None],
    *,
    progress: Progress | None = None,
) -> CatchUp:
    """Catch a projector up to its bound, sleeping off what it puts off and going on
    (the local and replay runs' way; a live worker hands the messages back to be
    redelivered when the work is due instead): the projector itself never waits."""
    done = catch_up(ledger, projector, progress=progress)
    while done.deferred_s is not None:
        sleep(done.deferred_s)
        more = catch_up(ledger, projector, progress=progress)
        done = CatchUp(done.start, more.end, done.read + more.read,
                       done.produced + more.produced, done.stored + more.stored,
                       more.deferred_s)  # fmt: skip
    return done


def catch_up_shards(ledger: Ledger, projector: Projector, shards: Sequence[Shard]) -> CatchUp:
    """Catch a projector without upstream up in several shards of one count at once:
    one read of the positions, one of the events, one append moving every shard's
    position (what live T0 does after each batch, for the touched shards' decisions).
    If the shards are far behind (a full batch to read), each is caught up on its own."""
    if projector.upstream or projector.whole_pass:
        raise ProjectionError(f"{projector.name}: only a projector without upstream here")
    if not shards:
        return CatchUp(0, 0)
    count = shards[0].count
    names = {s.index: tracking_of(projector, s) for s in shards}
    at = ledger.tracked_many(names.values())
    start = min(at.values())
    bound = ledger.head()
    done = CatchUp(start, bound)
    if start >= bound:
        return done
    events = ledger.read_batch(start + 1, bound, projector.topics, projector.batch_size)
    if len(events) >= projector.batch_size:  # far behind: shard by shard, in batches
        for shard in shards:
            one = catch_up(ledger, projector, shard=shard, shards=count)
            done.read, done.produced = done.read + one.read, done.produced + one.produced
            done.stored += one.stored
        return done
    mine = [
        e for e in events
        if (i := shard_of(e.stream, count)) in names and (e.position or 0) > at[names[i]]
    ]  # fmt: skip
    output = projector.process(mine, bound)
    if projector.deferral() is not None:
        raise ProjectionError(f"{projector.name}: puts work off; catch it up shard by shard")
    moves = [Tracking(n, at[n], bound) for n in names.values() if at[n] < bound]
    done.read, done.produced = len(mine), len(output)
    done.stored = ledger.append_rows(output, tracking=moves).appended
    return done
