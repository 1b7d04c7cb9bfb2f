"""Shapes shared by the recorders: what an append returns and how a row comes back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = ["AppendResult", "FetchedRow", "PreparedBatch", "Waiter"]


class FetchedRow(NamedTuple):
    """A stored event as read back: position, id, topic, state, stream."""

    position: int
    id: str
    topic: str
    state: bytes
    stream: str


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
