"""Folding the access events (grants, channel policies, tokens) into the read model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from skyledger.ledger import Event
from skyledger.ledger.access import (
    AccessGranted,
    AccessRevoked,
    ChannelPolicySet,
    TokenIssued,
    TokenRevoked,
)
from skyledger.projections import models as m

__all__ = ["fold_access"]

Row = dict[str, Any]
Fetch = Callable[[type[m.Base], str, Iterable[Any]], list[Row]]
Upsert = Callable[[type[m.Base], Sequence[Row]], None]


def fold_access(events: Sequence[Event], fetch: Fetch, upsert: Upsert) -> None:
    """Write the rows the access events of a batch (in position order) change."""
    grants = [e for e in events if isinstance(e, AccessGranted | AccessRevoked)]
    if grants:
        rows = {
            (r["channel"], r["member"]): r
            for r in fetch(m.Grant, "channel", {e.channel for e in grants})
        }
        touched: dict[tuple[str, str], Row] = {}
        for e in grants:
            key = (e.channel, e.member)
            row: Row
            if isinstance(e, AccessGranted):
                row = {
                    "channel": e.channel,
                    "member": e.member,
                    "granted_position": e.position,
                    "granted_by": e.by,
                    "revoked_position": None,
                    "revoked_by": None,
                }
            elif key in rows:
                row = rows[key] | {"revoked_position": e.position, "revoked_by": e.by}
            else:
                continue  # a revocation of what was never granted
            rows[key] = touched[key] = row
        upsert(m.Grant, list(touched.values()))
    policies = {
        e.channel: {
            "channel": e.channel,
            "public": e.public,
            "set_by": e.by,
            "programids": None if e.programids is None else list(e.programids),
            "position": e.position,
        }
        for e in events
        if isinstance(e, ChannelPolicySet)
    }
    upsert(m.ChannelPolicy, list(policies.values()))
    tokens = [e for e in events if isinstance(e, TokenIssued | TokenRevoked)]
    if tokens:
        stored = {
            r["token_id"]: r for r in fetch(m.Token, "token_id", {e.token_id for e in tokens})
        }
        changed: dict[str, Row] = {}
        for t in tokens:
            kept: Row
            if isinstance(t, TokenIssued):
                kept = {
                    "token_id": t.token_id,
                    "digest": t.digest,
                    "owner": t.owner,
                    "name": t.name,
                    "expires": t.expires,
                    "issued_position": t.position,
                    "issued_by": t.by,
                    "revoked_position": None,
                    "revoked_by": None,
                    "channels": None if t.channels is None else list(t.channels),
                    "identities": None if t.identities is None else list(t.identities),
                }
            elif t.token_id in stored:
                kept = stored[t.token_id] | {"revoked_position": t.position, "revoked_by": t.by}
            else:
                continue
            stored[t.token_id] = changed[t.token_id] = kept
        upsert(m.Token, list(changed.values()))
