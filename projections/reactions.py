"""Reactions listed: what T3 units intended, and how each delivery stands, by channel,
stock, unit and status, newest first, a pinned page at a time.

A page is read as of its first page's position: a reaction intended later is not on it,
and one whose delivery went on after it (claimed, delivered, failed) shows as it stood
there, folded again from its own stream (:func:`projections.asof.folded_streams`). A
caller sees the reactions its channels' selections made (``ReactionIntended.channels``,
only its own of them shown), and, limited to some survey programmes, only those about
one stock it may see (:mod:`projections.rights`).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Connection, and_, or_, select

from skyledger.ledger import Ledger
from skyledger.projections import models as m
from skyledger.projections.asof import folded_streams
from skyledger.projections.listing import ListingQuery, page_limit, pinned_position
from skyledger.projections.paging import Cursor, Page, query_digest
from skyledger.projections.queries import ReactionRow, reading, rows_of
from skyledger.projections.readmodel import ReadModel
from skyledger.projections.rights import programmes_allow
from skyledger.projections.scope import Scope

__all__ = ["ReactionQuery", "list_reactions"]

_BATCH = 500  # rows read at a time while a page fills


class ReactionQuery(ListingQuery):
    """Which reactions to list."""

    channel: str | None = None
    stock: str | None = None
    unit: str | None = None
    status: Literal["intended", "claimed", "delivered", "failed"] | None = None


def list_reactions(
    model: ReadModel,
    ledger: Ledger,
    query: ReactionQuery,
    scope: Scope | None = None,
    as_of: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ReactionRow]:
    """Return a page of reactions, newest intent first (module doc)."""
    scope = scope or Scope()
    limit = page_limit(limit)
    digest = query_digest(what="reactions", query=query.model_dump(), scope=scope.model_dump())
    pin = None if cursor is None else Cursor.decode(cursor, digest)
    names = scope.narrow(query.channel)
    x = m.Reaction.__table__
    found: list[dict[str, Any]] = []
    with reading(model) as conn:
        assert isinstance(conn, Connection)
        position = pinned_position(conn, as_of, pin)
        sql = select(x).where(x.c.position <= position)
        if query.stock is not None:
            sql = sql.where(x.c.stock == query.stock)
        if query.unit is not None:
            sql = sql.where(x.c.unit == query.unit)
        if scope.programids is not None:
            sql = sql.where(x.c.stock.is_not(None),
                            programmes_allow(x.c.stock, position, scope.programids))  # fmt: skip
        after = None if pin is None else (int(pin.after[0]), str(pin.after[1]))
        while len(found) <= limit:
            batch = sql
            if after is not None:
                batch = batch.where(or_(x.c.position < after[0],
                                        and_(x.c.position == after[0],
                                             x.c.idempotency_key > after[1])))  # fmt: skip
            rows = rows_of(conn, batch.order_by(x.c.position.desc(), x.c.idempotency_key)
                           .limit(_BATCH))  # fmt: skip
            if not rows:
                break
            after = (rows[-1]["position"], rows[-1]["idempotency_key"])
            found += _as_they_stood(ledger, rows, position, names, query.status)
    taken = found[: limit + 1]
    keys = [(r["position"], r["idempotency_key"]) for r in taken]
    return Page[ReactionRow].of([ReactionRow(**r) for r in taken], keys, limit, position, digest)


def _as_they_stood(
    ledger: Ledger,
    rows: list[dict[str, Any]],
    position: int,
    names: frozenset[str] | None,
    status: str | None,
) -> list[dict[str, Any]]:
    """Return the rows of a caller's channels (only those shown) and status, each as it
    stood at ``position``: one delivered on after it is folded again from its stream."""
    mine = [r for r in rows if names is None or set(r["channels"] or ()) & names]
    moved = [r["idempotency_key"] for r in mine if r["last_position"] > position]
    if moved:
        x = m.Reaction.__table__
        streams = [f"reaction:{k}" for k in moved]
        with folded_streams(ledger, streams, position) as then, reading(then) as again:
            was = {r["idempotency_key"]: r for r in rows_of(
                again, select(x).where(x.c.idempotency_key.in_(moved)))}  # fmt: skip
        mine = [was.get(r["idempotency_key"], r) for r in mine]
    shown = []
    for row in mine:
        if status is not None and row["status"] != status:
            continue
        if names is not None:
            row = row | {"channels": [c for c in row["channels"] or () if c in names]}
        shown.append(row)
    return shown
