"""The ledger: an append-only, content-addressed event log with provenance.

Its event types name the pipeline's facts (a packet received, a datapoint added, a state
combined, a result derived), but it reads none of their bodies: it stores events, hashes
content and keeps packets; what a datapoint or an alert means is the units' business.
Names are imported on first use, so that ``import ledger.ids`` (as pure units do) does
not load the store, eventsourcing or psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyledger.ledger.canonical import canonical_bytes, content_hash, digest_bytes
    from skyledger.ledger.errors import (
        ConfigError,
        EncodingError,
        EventRejected,
        LedgerError,
        LedgerUnavailable,
        ProjectionError,
        RunnerError,
        SkyledgerError,
        TrackingConflict,
        UnitError,
        UnknownEventType,
    )
    from skyledger.ledger.events import (
        AlertReceived,
        ConfigurationRegistered,
        DatapointAdded,
        DeliveryClaimed,
        Event,
        FilterDecided,
        Provenance,
        ReactionIntended,
        ReactionIssued,
        ReplayLimits,
        ResultDerived,
        ResultFailed,
        RunFinished,
        RunHeartbeat,
        RunStarted,
        StateCombined,
        UnitUse,
    )
    from skyledger.ledger.ids import bodies_id, config_id, datapoint_id, job_id, result_id, state_id
    from skyledger.ledger.rows import AppendResult, Tracking
    from skyledger.ledger.settings import LedgerSettings
    from skyledger.ledger.shards import Shard, shard_of
    from skyledger.ledger.store import Ledger

_WHERE = {
    "skyledger.ledger.canonical": ["canonical_bytes", "content_hash", "digest_bytes"],
    "skyledger.ledger.errors": [
        "ConfigError",
        "EncodingError",
        "EventRejected",
        "LedgerError",
        "LedgerUnavailable",
        "ProjectionError",
        "RunnerError",
        "SkyledgerError",
        "TrackingConflict",
        "UnitError",
        "UnknownEventType",
    ],
    "skyledger.ledger.events": [
        "AlertReceived",
        "ConfigurationRegistered",
        "DatapointAdded",
        "DeliveryClaimed",
        "Event",
        "FilterDecided",
        "Provenance",
        "ReactionIntended",
        "ReactionIssued",
        "ReplayLimits",
        "ResultDerived",
        "ResultFailed",
        "RunFinished",
        "RunHeartbeat",
        "RunStarted",
        "StateCombined",
        "UnitUse",
    ],
    "skyledger.ledger.ids": [
        "bodies_id", "config_id", "datapoint_id", "job_id", "result_id", "state_id",
    ],
    "skyledger.ledger.rows": ["AppendResult", "Tracking"],
    "skyledger.ledger.shards": ["Shard", "shard_of"],
    "skyledger.ledger.settings": ["LedgerSettings"],
    "skyledger.ledger.store": ["Ledger"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "AlertReceived",
    "AppendResult",
    "ConfigError",
    "ConfigurationRegistered",
    "DatapointAdded",
    "DeliveryClaimed",
    "EncodingError",
    "Event",
    "EventRejected",
    "FilterDecided",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "LedgerUnavailable",
    "ProjectionError",
    "Provenance",
    "ReactionIntended",
    "ReactionIssued",
    "ReplayLimits",
    "ResultDerived",
    "ResultFailed",
    "RunFinished",
    "RunHeartbeat",
    "RunStarted",
    "RunnerError",
    "Shard",
    "SkyledgerError",
    "StateCombined",
    "Tracking",
    "TrackingConflict",
    "UnitError",
    "UnitUse",
    "UnknownEventType",
    "bodies_id",
    "canonical_bytes",
    "config_id",
    "content_hash",
    "datapoint_id",
    "digest_bytes",
    "job_id",
    "result_id",
    "shard_of",
    "state_id",
]


if set(__all__) != set(_MODULE_OF):  # keep the literal list (for linters) and the map in step
    raise ImportError("ledger.__all__ and ledger._WHERE disagree")


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
