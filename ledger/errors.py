"""Errors raised by skyledger, all under one root.

SkyledgerError
+-- ConfigError            a setting, job or unit configuration is invalid (names the field)
|   +-- QueryError         a query's filter, cursor or id is invalid or ambiguous
|       +-- NotFound       what a query names is not there (or not the caller's to see)
+-- LedgerError            the ledger cannot do what was asked
|   +-- LedgerUnavailable  the store cannot be reached (names the URL, password hidden)
|   +-- EventRejected      an event failed validation (names the event type and field)
|   +-- UnknownEventType   a stored topic resolves to no event class
|   +-- EncodingError      content cannot be canonically encoded
|   +-- TrackingConflict   a projector's position was not where it said it started
+-- ProjectionError        a projector failed to apply an event
+-- UnitError              a unit raised or returned something invalid
+-- RunnerError            a run could not be carried out
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EncodingError",
    "EventRejected",
    "LedgerError",
    "LedgerUnavailable",
    "NotFound",
    "ProjectionError",
    "QueryError",
    "RunnerError",
    "SkyledgerError",
    "TrackingConflict",
    "UnitError",
    "UnknownEventType",
]


class SkyledgerError(Exception):
    """Root of every error skyledger raises on purpose."""


class ConfigError(SkyledgerError):
    """A setting, job or unit configuration is invalid."""


class QueryError(ConfigError):
    """A query's filter, cursor or id is invalid or ambiguous."""


class NotFound(QueryError):
    """What a query names is not there, or not the caller's to see."""


class LedgerError(SkyledgerError):
    """The ledger cannot do what was asked."""


class LedgerUnavailable(LedgerError):
    """The store cannot be reached."""


class EventRejected(LedgerError):
    """An event failed validation."""


class UnknownEventType(LedgerError):
    """A stored topic names no known event class."""


class EncodingError(LedgerError):
    """Content cannot be encoded canonically."""


class TrackingConflict(LedgerError):
    """A projector's tracking position was not where it said it started from, or would
    not move forward: another process works under the same name, or the position was
    reset. Nothing of the append that carried it was stored."""


class ProjectionError(SkyledgerError):
    """A projector failed to apply an event."""


class UnitError(SkyledgerError):
    """A unit raised, or returned something that is not a valid result."""

    def __init__(self, message: str, *, unit: str = "", event_id: str = "") -> None:
        super().__init__(message)
        self.unit = unit
        self.event_id = event_id


class RunnerError(SkyledgerError):
    """A run could not be carried out."""
