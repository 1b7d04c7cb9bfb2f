"""Shapes shared by the recorders: what an append returns and how a row comes back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from skyledger.ledger.errors import TrackingConflict

__all__ = [
    "AppendResult",
    "FetchedRow",
    "PreparedBatch",
    "Tracking",
    "Trackings",
    "Waiter",
    "check_move",
    "conflict",
    "each_tracking",
]


class FetchedRow(NamedTuple):
    """A stored event as read back: position, id, topic, state, stream."""

    position: int
    id: str
    topic: str
    state: bytes
    stream: str


class Tracking(NamedTuple):
    """A projector's move along the log, recorded with its output: it had processed up to
    ``after`` (0: nothing yet) and has now processed up to ``position``.

    The store records it only if its stored position is still ``after`` and ``position``
    is beyond it; otherwise the whole append fails with ``TrackingConflict``, so a
    position never moves backwards or sideways, and two processes working under one
    name are found out instead of silently doing the same work twice.
    """

    name: str
    after: int
    position: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one append did: how many events were new, how many were already stored."""

    appended: int
    skipped: int
    positions: tuple[int, ...] = ()

    def __add__(self, other: AppendResult) -> AppendResult:
        return AppendResult(
            self.appended + other.appended,
            self.skipped + other.skipped,
            self.positions + other.positions,
        )


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Rows encoded for one recorder, ready to send: their count and the payload
    (a binary COPY buffer for PostgreSQL, statement parameters for SQLite)."""

    count: int
    payload: Any


class Waiter(Protocol):
    """Blocks until the log may have grown (a notification) or a timeout passes."""

    def wait(self, timeout: float) -> None:
        """Return after a notification of new events, or after ``timeout`` seconds."""

    def close(self) -> None:
        """Release the resources held for waiting."""


Trackings = Tracking | Sequence[Tracking] | None
"""What an append moves: no position, one, or several (one projector's shards, say)."""


def each_tracking(tracking: Trackings) -> tuple[Tracking, ...]:
    """Return the moves an append carries, as a tuple."""
    if tracking is None:
        return ()
    if isinstance(tracking, Tracking):
        return (tracking,)
    return tuple(tracking)


def check_move(tracking: Tracking) -> None:
    """Raise TrackingConflict unless the move goes forward from a valid position."""
    if tracking.after < 0 or tracking.position <= tracking.after:
        raise TrackingConflict(
            f"tracking {tracking.name!r}: cannot move from {tracking.after} to "
            f"{tracking.position} (a position only moves forward)"
        )


def conflict(tracking: Tracking, stored: int | None) -> TrackingConflict:
    """Return the error for a move whose start is not the stored position."""
    found = "no position" if stored is None else f"position {stored}"
    return TrackingConflict(
        f"tracking {tracking.name!r}: expected position {tracking.after}, found {found}: "
        "another process is running the same projector, or its position was reset; "
        f"nothing was appended (this process would have moved it to {tracking.position})"
    )
