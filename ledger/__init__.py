"""The ledger: an append-only, content-addressed event log with provenance.

It knows nothing of astronomy: it stores events, hashes content and keeps packets.
"""

from ledger.canonical import canonical_bytes, content_hash, digest_bytes
from ledger.errors import (
    ConfigError,
    EncodingError,
    EventRejected,
    LedgerError,
    LedgerUnavailable,
    SkyledgerError,
    UnknownEventType,
)
from ledger.events import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    Event,
    FilterDecided,
    Provenance,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
    StateCombined,
)
from ledger.ids import config_id, datapoint_id, job_id, result_id, state_id
from ledger.rows import AppendResult
from ledger.settings import LedgerSettings
from ledger.store import Ledger

__all__ = [
    "AlertReceived",
    "AppendResult",
    "ConfigError",
    "ConfigurationRegistered",
    "DatapointAdded",
    "EncodingError",
    "Event",
    "EventRejected",
    "FilterDecided",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "LedgerUnavailable",
    "Provenance",
    "ReactionIssued",
    "ResultDerived",
    "ResultFailed",
    "RunFinished",
    "RunStarted",
    "SkyledgerError",
    "StateCombined",
    "UnknownEventType",
    "canonical_bytes",
    "config_id",
    "content_hash",
    "datapoint_id",
    "digest_bytes",
    "job_id",
    "result_id",
    "state_id",
]
