"""The change feed: new states, results and reactions of a scope's channels, by position.

``changes(model, ledger, scope, since)`` returns what changed after position ``since``
up to the read model's position (or up to ``until``, never past the read model's),
oldest first, each change with its position: a client that keeps the last position it
saw and asks again from there misses and repeats nothing, and one that pins ``until``
gets what the feed gave when the ledger stood there. A result that failed and later
succeeded, or a reaction whose delivery moved on, is a change again at its new position
(a reaction whose delivery, or a result whose retries, moved on after ``until`` is
shown as it stood then).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, exists, literal, select

from skyledger.ledger import Ledger, ResultFailed
from skyledger.ledger.errors import QueryError
from skyledger.projections import models as m
from skyledger.projections.asof import folded_streams
from skyledger.projections.listing import pinned_position, result_visible
from skyledger.projections.paging import MAX_POSITION
from skyledger.projections.queries import reading, rows_of
from skyledger.projections.readmodel import ReadModel
from skyledger.projections.rights import programmes_allow
from skyledger.projections.scope import Scope

__all__ = ["MAX_CHANGES", "changes"]

MAX_CHANGES = 10_000


def changes(
    model: ReadModel,
    ledger: Ledger,
    scope: Scope,
    since: int,
    limit: int = 1000,
    until: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Return up to ``limit`` changes after ``since`` up to ``until`` (oldest first) and
    the position the feed was read as of (where to go on from when fewer than ``limit``
    came)."""
    if not 0 <= since <= MAX_POSITION or not 1 <= limit <= MAX_CHANGES:
        raise QueryError(f"since {since}, limit {limit}: give since >= 0, limit 1 to {MAX_CHANGES}")
    names = None if scope.channels is None else sorted(scope.channels)
    with reading(model) as conn:
        assert isinstance(conn, Connection)
        position = pinned_position(conn, until, None)
        at: Any = bindparam("at", position)
        s, sc = m.State.__table__, m.StateChannel.__table__
        r, x = m.Result.__table__, m.Reaction.__table__
        states = select(s.c.position, s.c.stock, s.c.state_id, s.c.channels, s.c.alert_position)
        states = states.where(s.c.position > since, s.c.position <= at)
        results = select(r.c.position, r.c.stock, r.c.result_id, r.c.unit, r.c.unit_version,
                         r.c.config, r.c.subject, r.c.status, r.c.body, r.c.error)  # fmt: skip
        retried = results.add_columns(r.c.attempt).where(r.c.position > at, r.c.failures > 0)
        results = results.where(r.c.position > since, r.c.position <= at)
        reactions = select(x.c.last_position, x.c.stock, x.c.idempotency_key, x.c.unit,
                           x.c.target, x.c.status, x.c.channels)  # fmt: skip
        moving = select(x.c.idempotency_key).where(x.c.position <= at, x.c.last_position > at)
        reactions = reactions.where(x.c.last_position > since, x.c.last_position <= at)
        if scope.programids is not None:  # of stocks the caller may see (at the position)
            states = states.where(programmes_allow(s.c.stock, at, scope.programids))
            results = results.where(programmes_allow(r.c.stock, at, scope.programids))
            retried = retried.where(programmes_allow(r.c.stock, at, scope.programids))
            about = (x.c.stock.is_not(None), programmes_allow(x.c.stock, at, scope.programids))
            reactions, moving = reactions.where(*about), moving.where(*about)
        if names is not None:
            states = states.where(exists(select(literal(1)).where(
                sc.c.state_id == s.c.state_id, sc.c.channel.in_(names)
            )))  # fmt: skip
            results = results.where(result_visible(r, at, frozenset(names)))
            retried = retried.where(result_visible(r, at, frozenset(names)))
        moved = conn.execute(moving).scalars().all()
        found: list[dict[str, Any]] = []
        bound = position  # a kind that filled its page holds nothing checked past its last
        taken = rows_of(conn, states.order_by(s.c.position).limit(limit))
        for row in taken:
            shown = [c for c in row["channels"] if names is None or c in names]
            found.append({"kind": "state", **row, "channels": shown})
        bound = min(bound, taken[-1]["position"]) if len(taken) == limit else bound
        taken = rows_of(conn, results.order_by(r.c.position).limit(limit))
        taken += _failed_then(ledger, rows_of(conn, retried), since, position)
        found.extend({"kind": "result", **row} for row in taken)
        bound = min(bound, taken[-1]["position"]) if len(taken) == limit else bound
        taken = rows_of(conn, reactions.order_by(x.c.last_position).limit(limit))
        filled = len(taken) == limit
        bound = min(bound, taken[-1]["last_position"]) if filled else bound
        if moved:  # delivered on after the position: as they stood there
            streams = [f"reaction:{k}" for k in moved]
            with folded_streams(ledger, streams, position) as then, reading(then) as again:
                taken += rows_of(again, reactions)
        for row in taken:
            row["position"] = row.pop("last_position")
            mine = row["channels"]
            if names is None or (mine and set(mine) & set(names)):
                found.append({"kind": "reaction", **row})
    found = sorted((c for c in found if c["position"] <= bound), key=lambda c: c["position"])
    if len(found) > limit:
        found = found[:limit]
    if len(found) == limit or bound < position:
        position = found[-1]["position"] if found else bound
    return found, position


def _failed_then(
    ledger: Ledger, rows: list[dict[str, Any]], since: int, position: int
) -> list[dict[str, Any]]:
    """Return, of results that changed after ``position`` having failed before, those
    whose latest failure at or before it came after ``since``, as they stood then."""
    then: list[dict[str, Any]] = []
    for row in rows:
        attempt = int(row.pop("attempt") or 0)
        rid = row["result_id"]
        ids = [ResultFailed.id_for(result_id=rid, attempt=n) for n in range(1, attempt + 1)]
        failures = [
            e for e in ledger.get_many(ids).values()
            if isinstance(e, ResultFailed) and since < (e.position or 0) <= position
        ]  # fmt: skip
        if failures:
            last = max(failures, key=lambda e: e.position or 0)
            then.append(row | {"position": last.position, "status": "failed", "body": None,
                               "error": last.error})  # fmt: skip
    return then
