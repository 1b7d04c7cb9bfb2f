"""Any event in one line of words: what a stock's journal and a lineage's steps say.

One describer for every reader (the read model keeps its lines in the journal; a lineage
names each step with it), so an event reads the same wherever it is shown. Ids are cut
to 12 hex digits; a result's body to :data:`BODY_CHARS` characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from skyledger.ledger import (
    AlertReceived,
    ConfigurationRegistered,
    DatapointAdded,
    DeliveryClaimed,
    Event,
    FilterDecided,
    Provenance,
    ReactionIntended,
    ReactionIssued,
    ResultDerived,
    ResultFailed,
    RunFinished,
    RunStarted,
    StateCombined,
    canonical_bytes,
)

__all__ = ["BODY_CHARS", "describe"]

BODY_CHARS = 80


def describe(e: Event) -> str:
    """Return an event in a few words (one line)."""
    if isinstance(e, AlertReceived):
        what = f"alert {e.alert_id or '?'} ({e.schema_name or '?'}) from {e.locator}"
        return what + (f": unreadable, {e.error}" if e.error else "")
    if isinstance(e, DatapointAdded):
        return _datapoint(e)
    if isinstance(e, FilterDecided):
        how = "accepted" if e.accepted else f"rejected (code {e.code})"
        how += f" into group {e.group}" if e.accepted and e.group is not None else ""
        why = f": {e.reason}" if e.reason else ""
        return f"channel {e.channel} {how} by {_by(e.provenance)}{why}"
    if isinstance(e, StateCombined):
        at = f" at alert {e.alert[:12]}" if e.alert else ""
        n = len(e.datapoint_ids)
        return f"state {e.state_id[:12]} of {n} datapoints by {_by(e.provenance)}{at}"
    if isinstance(e, ResultDerived):
        on = f"result {e.result_id[:12]} on {e.subject[:12]} by {_by(e.provenance)}"
        return f"{on}: {_short(e.body)}"
    if isinstance(e, ResultFailed):
        error = e.error.splitlines()[0][:200] if e.error else ""
        return (f"result {e.result_id[:12]} on {e.subject[:12]} by {_by(e.provenance)} failed "
                f"(attempt {e.attempt}): {error}")  # fmt: skip
    if isinstance(e, ReactionIntended):
        return f"reaction {e.idempotency_key[:12]} intended by {e.provenance.unit} for {e.target}"
    if isinstance(e, DeliveryClaimed):
        return f"delivery of {e.idempotency_key[:12]}, attempt {e.attempt}, claimed"
    if isinstance(e, ReactionIssued):
        what = f"{e.outcome} ({e.detail})" if e.detail else e.outcome
        return (f"reaction {e.idempotency_key[:12]} by {e.provenance.unit} to {e.target}, "
                f"attempt {e.attempt}: {what}")  # fmt: skip
    if isinstance(e, RunStarted):
        return f"run {e.run[:12]} of job {e.job_hash[:12]} on {e.host}"
    if isinstance(e, RunFinished):
        return f"run {e.run[:12]} ended: {e.status}"
    if isinstance(e, ConfigurationRegistered):
        return f"configuration {e.config_hash[:12]} of {e.unit}"
    return type(e).__name__


def _datapoint(e: DatapointAdded) -> str:
    """A datapoint: its kind and id, band, magnitude (or the limit) and time."""
    b = e.body
    parts = [f"{e.kind} {e.datapoint_id[:12]}"]
    if b.get("band") is not None:
        parts.append(str(b["band"]))
    if b.get("mag") is not None:
        parts.append(f"mag {b['mag']}")
    elif b.get("limmag") is not None:
        parts.append(f"limit {b['limmag']}")
    if b.get("jd") is not None:
        parts.append(f"at jd {b['jd']}")
    by = f" (replayed shaper {e.shaper})" if e.shaper else ""
    return " ".join(parts) + by


def _by(p: Provenance) -> str:
    return f"{p.unit}@{p.unit_version}"


def _short(body: Mapping[str, Any]) -> str:
    text = canonical_bytes(dict(body)).decode()
    return text if len(text) <= BODY_CHARS else text[: BODY_CHARS - 3] + "..."
