"""Limits of a replay: which alerts (a range of positions) and which stocks it goes over.

A limited replay drives the job's projectors with every event outside the limits left
out, under tracking names of their own (the projector's name with the limits' tag), so
its positions never stand for work it did not do: a later replay without limits, or
with others, goes over everything again and reuses what is already in the ledger
(results by id, states and decisions stored once).

Events are placed by the alert they are about: an AlertReceived by its own position, a
decision or a state by its alert's position. Projectors of other events (the delivery
of intents) are not limited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skyledger.ledger import AlertReceived, Event, FilterDecided, StateCombined, content_hash
from skyledger.projections.projector import Deferral, Projector
from skyledger.projections.stocks import alert_position

__all__ = ["Limited", "Limits"]

_PLACED = (AlertReceived, FilterDecided, StateCombined)


@dataclass(frozen=True)
class Limits:
    """Alerts at positions ``since`` to ``until`` (inclusive; None: no bound), of the
    ``stocks`` given (None: every stock)."""

    since: int | None = None
    until: int | None = None
    stocks: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            msg = f"the range is empty: from position {self.since} to {self.until}"
            raise ValueError(msg)

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None or self.stocks is not None

    def as_dict(self) -> dict[str, Any]:
        """Return the limits as JSON-compatible data (what the run records)."""
        stocks = sorted(self.stocks) if self.stocks is not None else None
        return {"since": self.since, "until": self.until, "stocks": stocks}

    @property
    def tag(self) -> str:
        """Return a short hash of the limits (empty without limits)."""
        return content_hash("limits", self.as_dict())[:12] if self else ""

    def name_of(self, name: str) -> str:
        """Return the tracking name of a projector under these limits."""
        return f"{name}/{self.tag}" if self else name

    def meet(self, other: Limits) -> Limits | None:
        """Return the limits of what both admit (None: nothing, the ranges do not meet)."""
        since = max((p for p in (self.since, other.since) if p is not None), default=None)
        until = min((p for p in (self.until, other.until) if p is not None), default=None)
        if since is not None and until is not None and since > until:
            return None
        stocks = self.stocks if other.stocks is None else other.stocks
        if self.stocks is not None and other.stocks is not None:
            stocks = self.stocks & other.stocks
        return Limits(since, until, stocks)

    def admits(self, event: Event) -> bool:
        """Return True for an event within the limits."""
        if self.stocks is not None and event.stream not in self.stocks:
            return False
        at = alert_position(event)
        if at is None:
            return True
        return (self.since is None or at >= self.since) and (self.until is None or at <= self.until)

    def apply(self, projector: Projector) -> Projector:
        """Return the projector limited (itself without limits, or if what it consumes
        is not placed by alert: the delivery of intents)."""
        if not self or not projector.topics:
            return projector
        if not all(issubclass(t, _PLACED) for t in projector.topics):
            return projector
        return Limited(projector, self)


class Limited(Projector):
    """A projector that sees only the events within some limits, under its own name."""

    def __init__(self, inner: Projector, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits
        self.name = limits.name_of(inner.name)
        self.topics = inner.topics
        self.upstream = tuple(limits.name_of(n) for n in inner.upstream)
        self.batch_size = inner.batch_size
        self.whole_pass = inner.whole_pass

    def process(self, events: Sequence[Event], bound: int) -> Sequence[Any]:
        """Hand the events within the limits to the projector."""
        return self.inner.process([e for e in events if self.limits.admits(e)], bound)

    def finish(self, bound: int) -> Sequence[Any]:
        """Return what the projector records at the end of a pass."""
        return self.inner.finish(bound)

    def deferral(self) -> Deferral | None:
        """Return the work the projector put off, if any."""
        return self.inner.deferral()
